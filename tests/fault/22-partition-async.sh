#!/bin/sh
# 22-partition-async: 20-partition's four cuts (reset, refuse, blackhole
# with a full window, blackhole under a light load) in async mode, where
# the primary encrypts and sends on a thread of its own (stream_offload):
# every drop is noticed, every resync is bounded by what was written, the
# acknowledged stamps reach the mirror, and the volumes end equal. In case
# D the window fills at once (the clients do not wait for the mirror), so
# the drop may come from congestion_timeout instead of idle_timeout.
PARTITION_MODE=async
. "$(dirname "$0")/20-partition.sh"
