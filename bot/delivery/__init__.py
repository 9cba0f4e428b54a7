"""Delivery: turn a growing reply into paced, coalesced platform messages."""
