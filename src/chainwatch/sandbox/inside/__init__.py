"""Code that runs INSIDE the outer sandbox with the system Python (stdlib only, no chainwatch
imports): the supervisor that lays out the bait home, starts the loopback sink and runs each phase
in an inner, capability-less sandbox; plus the JavaScript preload and harnesses (package data)."""
