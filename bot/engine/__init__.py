"""The engine: turns, locks, queue, swipes, continue, stop, reset."""
