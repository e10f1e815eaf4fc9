"""`tokenpool ask [--model M]... [--operation OP] TEXT`: one tracked call through the pool.

How a user checks a pool before trusting it with their account: the answer, then the
key and allowance that served it, the tokens, the cost (or "unpriced") and every
failover step on the way. The call is recorded like any other (operation `ask`).
"""
from __future__ import annotations

import asyncio
import json
import sys

from shared.ai.client import ChatResult, ClientError, TrackedClient
from shared.core.accounting import Accountant
from shared.core.pricing import Pricer, format_usd, nano_to_usd, override_hint
from shared.core.startup import open_runtime


def register(command) -> None:
    sub = command("ask", cmd_ask, "send one tracked call through the pool; show the answer, key, allowance, "
                                  "tokens, cost and every failover step")
    sub.add_argument("text", nargs="+", help="the message to send")
    sub.add_argument("--model", "-m", action="append", metavar="M",
                     help="the model (repeat for a fallback chain; default: client.default_model)")
    sub.add_argument("--operation", default="ask", help="the operation label it is recorded under (default ask)")
    sub.add_argument("--max-tokens", type=int, default=None, help="cap on the answer's tokens")


def cmd_ask(args) -> int:
    runtime = open_runtime(config_path=args.config)
    return asyncio.run(_ask(runtime, args))


async def _ask(runtime, args) -> int:
    config, keyring = runtime.config, runtime.keyring
    pricer = Pricer(config.pricing)
    accountant = Accountant(config.bot.name, pricer)
    client = TrackedClient(config, keyring, accountant)
    try:
        result = await client.chat([{"role": "user", "content": " ".join(args.text)}], operation=args.operation,
                                   models=args.model, max_tokens=args.max_tokens)
    except ClientError as exc:
        steps = getattr(exc, "steps", ())
        if args.json:
            print(json.dumps({"error": str(exc), "steps": [_step_json(s) for s in steps]}, indent=2))
        else:
            print(f"tokenpool ask: {exc}", file=sys.stderr)
            _print_steps(steps, sys.stderr)
        return 1
    finally:
        await client.aclose()
        accountant.close()
    key = next((keyring.get(i) for i in keyring.ids() if keyring.get(i).label == result.key_label), None)
    allowances = [a.name for a in key.allowances_for(result.model)] if key else []
    unpriced = pricer.price(result.model, result.input_tokens, result.cached_tokens, result.output_tokens) is None
    if args.json:
        print(json.dumps(_json(result, key.masked if key else "", allowances, unpriced), indent=2))
        return 0
    print(result.text)
    print()
    approx = "~" if result.estimated else ""
    rows = [("key", f"{result.key_label} ({key.masked if key else '?'})"),
            ("allowance", ", ".join(allowances) or "none (the key's own daily limit)"),
            ("model", result.model),
            ("tokens", f"in {approx}{result.input_tokens:,} (cached {result.cached_tokens:,}) "
                       f"out {approx}{result.output_tokens:,}" + (" (estimated)" if result.estimated else "")),
            ("cost", _cost(result, unpriced)),
            ("time", f"{result.duration_ms:,} ms")]
    for name, value in rows:
        print(f"{name:<10} {value}")
    _print_steps(result.steps, sys.stdout)
    return 0


def _cost(result: ChatResult, unpriced: bool) -> str:
    if unpriced:
        return (f"unpriced ({result.usage.total:,} tokens; no price known for {result.model}: "
                f"{override_hint(result.model)})")
    return f"${nano_to_usd(result.cost_nanousd):.6f}" if result.cost_nanousd < 10_000_000 \
        else format_usd(result.cost_nanousd)


def _print_steps(steps, stream) -> None:
    for i, step in enumerate(steps, 1):
        label = "steps" if i == 1 else ""
        detail = f"  {step.error_code}" if step.error_code else ""
        print(f"{label:<10} {i}. {step.key_label} {step.model} {step.outcome}{detail}", file=stream)


def _step_json(step) -> dict:
    return {"key": step.key_label, "model": step.model, "outcome": step.outcome, "error_code": step.error_code}


def _json(result: ChatResult, masked: str, allowances: list[str], unpriced: bool) -> dict:
    return {"answer": result.text, "key": result.key_label, "key_masked": masked, "allowances": allowances,
            "model": result.model, "input_tokens": result.input_tokens, "cached_tokens": result.cached_tokens,
            "output_tokens": result.output_tokens, "reasoning_tokens": result.reasoning_tokens,
            "estimated": result.estimated, "cost_usd": None if unpriced else str(nano_to_usd(result.cost_nanousd)),
            "unpriced": unpriced, "duration_ms": result.duration_ms, "call_id": result.call_id,
            "steps": [_step_json(s) for s in result.steps]}
