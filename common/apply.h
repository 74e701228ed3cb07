/*
 * apply.h: one engine piece applied to storage; the engine backend both
 * daemons share. Flags are the engine's (TG_F_* in tg.h), so neither the
 * wire's nor NBD's flag bits leak into common code.
 */
#ifndef DUET_APPLY_H
#define DUET_APPLY_H

#include <stdint.h>

struct storage;
struct tg_op;

/*
 * Applies [off, off+len) of op (TG_READ, TG_WRITE, TG_WRITE_ZEROES,
 * TG_TRIM) to st, buf being that part of op->buf. Returns 0 or -errno and
 * logs a failure with the span.
 */
int apply_storage(struct storage *st, struct tg_op *op, uint64_t off,
    uint64_t len, void *buf);

#endif
