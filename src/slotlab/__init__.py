"""slotlab: learn how Redis Cluster places keys in hash slots, and why multi-key operations break.

Start here::

    import slotlab
    lab = slotlab.start_lab(masters=3)
    rc = lab.cluster_client()
"""

from slotlab.expect import expect_error
from slotlab.lab import Lab, start_lab
from slotlab.slots import SLOT_COUNT, crc16, hash_tag, key_slot, key_slots

__all__ = [
    "SLOT_COUNT",
    "Lab",
    "crc16",
    "expect_error",
    "hash_tag",
    "key_slot",
    "key_slots",
    "start_lab",
]
__version__ = "0.1.0"
