from __future__ import annotations

import json
import logging

from core.observability import configure_logging, redact


def test_emails_and_card_numbers_are_masked():
    text = "refund for alice.smith@example.test paid with 4242 4242 4242 4242 ok"
    out = redact(text)
    assert "alice.smith@" not in out and "a***@example.test" in out
    assert "4242 4242 4242" not in out and "****4242" in out


def test_short_numbers_and_ids_are_left_alone():
    assert redact("invoice in_123 total 1999 EUR, user u_000042") == (
        "invoice in_123 total 1999 EUR, user u_000042"
    )


def test_stdlib_loggers_go_through_the_redaction(capsys):
    configure_logging(json_logs=True)
    try:
        logging.getLogger("twinbill.test").warning(
            "customer %s card %s", "bob@example.test", "4000000000000341"
        )
        line = capsys.readouterr().err.strip().splitlines()[-1]
        event = json.loads(line)
        assert "bob@" not in line and "4000000000000341" not in line
        assert event["event"] == "customer b***@example.test card ****0341"
    finally:
        logging.getLogger().handlers.clear()
