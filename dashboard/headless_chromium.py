"""The flags a headless Chromium gets when it drives the dashboard (the browser test and tools/bench_dashboard.py).

Without the background-networking flags Chromium keeps trying to reach Google's hosts, which a closed network
refuses, and page loads slow down by seconds.
"""

CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
