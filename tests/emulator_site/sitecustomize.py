"""Loaded by every Python process the gs:// tests start (tests/gcs_emulator.py puts this folder on
PYTHONPATH): with a GCS emulator in use, Beam looks up no credentials."""
import os

if os.environ.get("STORAGE_EMULATOR_HOST"):
    from tests.gcs_emulator import beam_without_credentials

    beam_without_credentials()
