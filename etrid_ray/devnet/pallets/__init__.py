"""The devnet runtime's pallets, one module each, in `construct_runtime!` order."""
