"""The legacy adapter: Stripe Billing (the current API) and localstripe, one package.

``backend`` is the port implementation (``StripeLegacyBackend``: its reads, its writes
mixed in from ``writes``); ``transport`` is the only other module that imports the
``stripe`` SDK (throttle, calls, errors, paging);
``dialect`` holds each dialect's frozen ``Dialect`` (what it sends, how its answers read);
``mapping`` (with ``subscriptions``, ``payments``, ``preview``, ``offline_map`` and the
shape helpers in ``fields``) turns raw Stripe objects into canonical ones; ``offline``
records money paid outside Stripe.
"""
