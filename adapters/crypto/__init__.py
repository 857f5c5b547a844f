"""Encryption of connector configs at rest (AES-256-GCM)."""
