"""Security: provider keys, confidential compute (TEE), and compliance (encryption, transport, audit, reports)."""
