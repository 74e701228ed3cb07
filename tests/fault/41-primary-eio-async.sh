#!/bin/sh
# 41-primary-eio-async: 40-primary-eio in async mode, where a write is
# answered once queued: with the disk failed, writes and flushes must wait
# for the mirror instead.
EIO_MODE=async
. "$(dirname "$0")/40-primary-eio.sh"
