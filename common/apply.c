/* apply.c: see apply.h. */
#include <errno.h>
#include <string.h>

#include "common/apply.h"
#include "common/log.h"
#include "common/storage.h"
#include "common/tg.h"
#include "common/util.h"

static const char *
op_name(enum tg_type t)
{
	switch (t) {
	case TG_READ: return "read";
	case TG_WRITE: return "write";
	case TG_WRITE_ZEROES: return "write-zeroes";
	case TG_TRIM: return "trim";
	default: return "op";
	}
}

static struct log_every storage_errors;

int
apply_storage(struct storage *st, struct tg_op *op, uint64_t off,
    uint64_t len, void *buf)
{
	uint64_t skipped;
	int rc;

	switch (op->type) {
	case TG_READ:
		rc = storage_read(st, buf, len, off);
		break;
	case TG_WRITE:
		if (buf == NULL && op->iov != NULL) {
			VERIFY(off == op->off && len == op->len);
			rc = storage_writev(st, op->iov, op->iovcnt, off);
		} else
			rc = storage_write(st, buf, len, off);
		break;
	case TG_WRITE_ZEROES:
		rc = storage_write_zeroes(st, len, off,
		    (op->flags & TG_F_NO_HOLE) != 0);
		break;
	case TG_TRIM:
		rc = storage_trim(st, len, off);
		break;
	default:
		return -EINVAL;
	}
	if (rc == 0 && (op->flags & TG_F_FUA) && op->type != TG_READ)
		rc = storage_flush(st);
	if (rc != 0 && log_every(&storage_errors, &skipped))
		log_warnx("storage: %s at %llu+%llu: %s (%llu more failures "
		    "not logged since the last line)", op_name(op->type),
		    (unsigned long long)off, (unsigned long long)len,
		    strerror(-rc), (unsigned long long)skipped);
	return rc;
}
