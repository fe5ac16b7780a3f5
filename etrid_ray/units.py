"""The chain's money unit, defined once: ËDSC has 18 decimals on chain (one ËDSC is 10^18 planck).

Everything that prices, bills or shows earnings — the chain client, the config, the scaling policy, the
metrics — takes the unit from here. (Parsing and formatting amounts for people is `chain/units.py`.)
"""

from __future__ import annotations

DECIMALS = 18
PLANCK_PER_EDSC = 10**DECIMALS
SYMBOL = "ËDSC"
