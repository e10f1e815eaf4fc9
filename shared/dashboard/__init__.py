"""The read-only web dashboard: `tokenpool dashboard` (aiohttp.web + Jinja2, no CDN, no build step)."""
