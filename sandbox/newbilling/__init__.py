"""Reference in-house ("new") billing service for twinbill.

It deliberately imports nothing from the rest of the repository: its own models,
its own database, its own money rules. Shared code between the orchestrator and
this service would hide exactly the mapping bugs twinbill's reconciler exists to
find. The orchestrator talks to it over HTTP only (see
``docs/contract/newbilling.md``). Build the ASGI app with
:func:`sandbox.newbilling.app.create_app`; nothing is created at import time.
"""

from __future__ import annotations
