"""Training: simulated-click samples (Sec. 3.4) and the loop (``spbox train``, DDP via torchrun)."""
