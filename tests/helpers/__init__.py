"""Test-only fixtures (not shipped): a test certificate authority and fake TEE trees, recorded cloud APIs,
fake cloud metadata servers, a Ray head with the tests' defaults. Benchmarks may import them from a checkout."""
