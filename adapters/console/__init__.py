"""The console front end: talk to a character in the terminal, no platform account needed."""
