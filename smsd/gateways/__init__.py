"""Network-side drivers: one module per protocol, all behind ``base.Gateway``.

Each driver module offers ``Options`` (an attrs class: the keys of its
``[[gateway]]`` table beyond the common ones) and ``make(common, options,
events, context)`` which returns the ``Gateway`` service.
"""
