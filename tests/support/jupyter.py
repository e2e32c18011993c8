"""Helpers for driving JupyterLab from the browser tests (no fixtures here)."""

from __future__ import annotations

import json
import pathlib

import httpx


def delete_sessions(url: str) -> None:
    """Kernels outlive pages: shut every session down (needs the _xsrf cookie)."""
    with httpx.Client(base_url=url, timeout=10) as client:
        client.get("/lab")
        xsrf = client.cookies.get("_xsrf") or ""
        for session in client.get("/api/sessions").json():
            client.delete(f"/api/sessions/{session['id']}", headers={"X-XSRFToken": xsrf})


def write_notebook(path: pathlib.Path, cells: list[str]) -> None:
    nb = {
        "cells": [
            {
                "cell_type": "code",
                "execution_count": None,
                "metadata": {},
                "outputs": [],
                "source": src,
            }
            for src in cells
        ],
        "metadata": {
            "kernelspec": {
                "display_name": "Python 3 (ipykernel)",
                "language": "python",
                "name": "python3",
            },
            "language_info": {"name": "python"},
        },
        "nbformat": 4,
        "nbformat_minor": 5,
    }
    path.write_text(json.dumps(nb, indent=1))
