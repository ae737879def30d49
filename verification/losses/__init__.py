"""One module per loss, holding what the suite declares about that loss alone: the strategy that draws its valid
calls, the tolerance model's replays of torch's forward and backward, its rejections, its planted bugs, its
divergence rules, and its registry entry (``INFO``), which names all of them and every gap. Pieces several losses
share live in ``verification/strategies.py``, ``rejections.py``, ``planted_bugs.py``, ``divergences.py`` and
``tolerance/``."""
