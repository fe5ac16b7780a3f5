"""pallet_insecure_randomness_collective_flip (index 5 in the Etrid AI-Compute runtime): the parent hashes of the
last 81 blocks, from which upstream's DisputeArbitration and Consensus draw (insecure) randomness. Here it only
declares its storage, so the runtime's shape and index are upstream's; nothing in the devnet draws randomness, so
nothing fills it (a write every block would only grow the state history that old-state queries walk)."""

from __future__ import annotations

from etrid_ray.devnet.pallet import Pallet

RANDOM_MATERIAL_LEN = 81


class RandomnessCollectiveFlip(Pallet):
    def declare(self) -> None:
        self.name, self.index, self.module = ("RandomnessCollectiveFlip", 5,
                                              "pallet_insecure_randomness_collective_flip")
        c = self.runtime.types
        self.RandomMaterial = self.storage(
            "RandomMaterial", self.reg.bounded_vec(c.h256, RANDOM_MATERIAL_LEN), [],
            docs="Series of block headers from the last 81 blocks that acts as random seed material.")
