"""Platform front ends: each translates platform events into the core's Inbound turns."""
