"""The built-in `completion` task: continue a prompt, or suggest the next word."""
