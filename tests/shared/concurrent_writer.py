"""A writer process for the multi-process accounting test: `python -m tests.shared.concurrent_writer
URL SEED CALLS KEY_IDS`. It records CALLS random calls without retries (any "database is
locked" or other error makes it exit non-zero) and prints how many it recorded."""
import datetime as dt
import random
import sys

from shared.core.accounting import CallRecord, Outcome, record_call
from shared.core.db import connect_database
from shared.core.models import ApiKey
from shared.core.pricing import Pricer

MODELS = ["gpt-4o-mini", "gpt-4o", "gpt-4.1-nano"]
OPERATIONS = ["autoreply", "summary", "translate"]
OUTCOMES = [Outcome.OK] * 8 + [Outcome.RATE_LIMITED, Outcome.SERVER_ERROR]


def main(url, seed, calls, key_ids):
    rng = random.Random(seed)
    db = connect_database(url)
    anchors = {key.id: key.window_anchor for key in ApiKey.select()}
    pricer = Pricer()
    for _ in range(calls):
        key_id = rng.choice(key_ids)
        outcome = rng.choice(OUTCOMES)
        tokens = outcome is Outcome.OK
        # Spread over three windows, in random order, so some calls land "late".
        at = anchors[key_id] + dt.timedelta(seconds=rng.uniform(0, 3 * 86400 - 1))
        inp = rng.randint(1, 3000) if tokens else 0
        record_call(CallRecord(key_id=key_id, bot=f"bot{seed}", operation=rng.choice(OPERATIONS),
                               model=rng.choice(MODELS), outcome=outcome, input_tokens=inp,
                               cached_tokens=rng.randint(0, inp) if tokens else 0,
                               output_tokens=rng.randint(1, 800) if tokens else 0,
                               duration_ms=rng.randint(50, 3000), at=at,
                               chat_id=rng.randint(1, 20)), anchor=anchors[key_id], pricer=pricer)
    db.close()
    print(calls)


if __name__ == "__main__":
    main(sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), [int(x) for x in sys.argv[4].split(",")])
