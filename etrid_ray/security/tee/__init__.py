"""Confidential compute: detect a node's TEE (detect), attest it against a fresh nonce (attest), verify the
evidence offline (verify), and turn the verdicts into Ray resources and placement rules (node)."""
