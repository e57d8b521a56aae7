"""Shared kernel: settings, database, canonical billing model, money, errors, audit, Celery.

Imports nothing of ours; every other package may import it.
"""
