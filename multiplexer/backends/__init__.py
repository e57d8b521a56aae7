"""Billing backends: one interface (``base.BillingBackend``), one module or package per system."""
