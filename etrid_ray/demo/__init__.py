"""The product's demos: `etrid-ray demo` (`replay`: the whole product on one machine, a trace replayed on a fake
KubeRay cluster) and `make lifecycle` (`lifecycle`: one job's life on a fresh devnet). Nothing here is imported
by the provider itself."""
