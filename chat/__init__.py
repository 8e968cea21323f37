"""Chat scripts: talk to a tri-mode model in-process, in any of its decoding modes."""
