"""Cloud prices behind one interface (`PriceSource`); the shipped catalog is the offline source."""

from etrid_ray.prices.catalog import (
    CATALOG_AS_OF,
    CatalogRow,
    FallbackSource,
    PriceCatalog,
    PriceQuote,
    PriceSource,
    default_catalog,
    quotes_for,
)

__all__ = ["CATALOG_AS_OF", "CatalogRow", "FallbackSource", "PriceCatalog", "PriceQuote", "PriceSource",
           "default_catalog", "quotes_for"]
