#!/bin/sh
# make demo: a primary and a mirror on loopback, written through a real NBD
# client. duet-primary does not exist yet, so there is nothing to demonstrate
# end to end: say so and fail rather than pretend.
echo "make demo: arrives with the primary (duet-primary, issue 3)." >&2
echo "make demo: today duet-mirror runs alone; see README.md, \"duet-mirror today\"." >&2
exit 1
