"""Browser tests: pages driven in a real Chromium (Debian's package) through Playwright."""
