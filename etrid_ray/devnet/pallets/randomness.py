"""pallet_insecure_randomness_collective_flip (index 5 in the Etrid AI-Compute runtime): the parent hashes of the
last 81 blocks, from which upstream's DisputeArbitration and Consensus draw (insecure) randomness. Here it only keeps
its storage so the runtime's shape and index are upstream's; nothing in the devnet reads it."""

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

    def on_initialize(self, block_number: int) -> None:
        if block_number == 0:
            return
        state = self.runtime.state
        parent = state.get(self.runtime.system.ParentHash)
        material = list(state.get(self.RandomMaterial))
        index = (block_number - 1) % RANDOM_MATERIAL_LEN
        if len(material) <= index:
            material.append(parent)
        else:
            material[index] = parent
        state.put(self.RandomMaterial, None, material)
