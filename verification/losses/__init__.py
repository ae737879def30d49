"""One module per loss: its strategy, replays, rejections, planted bugs and registry entry (``INFO``)."""
