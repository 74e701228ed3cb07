/*
 * tg.h: range task groups, the engine both daemons apply operations with
 * (DESIGN.md "Range task groups").
 *
 * The volume's address space is cut into ranges of range_size bytes; range r
 * belongs to group r % groups. An operation crossing a range boundary is
 * split there into pieces, each applied by the group owning its range. Per
 * group: `tasks` worker threads, one main queue (its own lock), one mini
 * queue per task, and a conflict table (its own lock) holding an entry per
 * piece that a task is executing or holds in its mini queue.
 *
 * Guarantees (the invariants of DESIGN.md):
 *  1. pieces whose spans overlap are applied in sequence-number order;
 *  2. an operation is applied only after every operation numbered <= its
 *     frontier has completed (the gate in tg_submit);
 *  3. a FLUSH calls backend->flush only after every operation numbered
 *     below it has completed, and completes after that flush returns;
 *  4. hence the image equals applying all operations in sequence order.
 *
 * Threads: tg_submit (and tg_submit_claim, tg_run_claimed, tg_drain,
 * tg_destroy) is called by one dispatcher at a time, with strictly
 * increasing sequence numbers and non-decreasing frontiers. backend->apply
 * and ->flush run on engine threads, as does op->done.
 *
 * Inline execution (tg_params.inline_ns): handing a piece to a task costs
 * a wake-up and two context switches, more than a write into the page
 * cache takes. So while the backend's recent applies are short, an op that
 * the engine could start at once anyway (one piece, not gated, no older
 * overlap in its group's table or anything waiting in its main queue, not
 * FUA, not a FLUSH or TG_OTHER) is applied by the dispatcher itself,
 * inside tg_submit, with its conflict-table entry made as for a task: the
 * invariants are untouched. op->done then runs on the dispatcher's thread
 * before tg_submit returns. With inline_flush, a FLUSH with nothing before
 * it incomplete is likewise run inside tg_submit: at queue depth 1 that
 * saves the flusher's wake-up and the completion's, at the price of
 * blocking the submitter for the flush.
 *
 * Ownership: the caller owns each tg_op and its buffer. The engine uses them
 * from tg_submit until it calls op->done(op, status); after done returns
 * the engine never touches the op again, so done may free it.
 */
#ifndef DUET_TG_H
#define DUET_TG_H

#include <sys/uio.h>

#include <stdint.h>

#include "common/wake.h"

enum tg_type {
	TG_WRITE = 1,
	TG_WRITE_ZEROES,
	TG_TRIM,
	TG_READ,
	TG_FLUSH,
	TG_OTHER,	/* ordered like a write; the backend knows what it is */
};

/* tg_op.flags the engine passes through to the backend. */
#define TG_F_FUA	0x1u	/* durable before the op completes */
#define TG_F_NO_HOLE	0x2u	/* write-zeroes: allocate, do not punch */

struct tg;
struct tg_op;
struct tg_group;

/* One piece of an operation: the part inside one range. Engine-private. */
struct tg_piece {
	struct tg_op	*p_op;
	uint64_t	 p_off;
	uint64_t	 p_len;
	unsigned	 p_task;	/* task whose mini queue / hands hold it */
	struct tg_piece	*p_next;	/* main queue or mini queue link */
	struct tg_piece	*p_ct_prev;	/* conflict table links */
	struct tg_piece	*p_ct_next;
};

#define TG_INLINE_PIECES 2

struct tg_op {
	/* Filled by the caller. */
	uint64_t	seq;
	uint64_t	frontier;	/* < seq; 0 = depends on nothing */
	uint64_t	off;
	uint64_t	len;		/* > 0 unless type is TG_FLUSH */
	enum tg_type	type;
	uint32_t	flags;		/* passed through to the backend */
	void		*buf;		/* len bytes for TG_WRITE / TG_READ */
	/* Or, buf NULL: a TG_WRITE's len bytes in pieces (tg_try_inline
	 * only, which applies the op as one piece). */
	const struct iovec *iov;
	int		 iovcnt;
	void		(*done)(struct tg_op *op, int status);
	void		*arg;

	/* Engine-private. */
	struct tg_op	*o_prev;	/* incomplete list, in seq order */
	struct tg_op	*o_next;
	struct tg_op	*o_gate_next;	/* held at the frontier gate */
	int		 o_pending;	/* pieces not yet applied (atomic) */
	int		 o_status;	/* first error of any piece (atomic) */
	int		 o_flush_started;
	unsigned	 o_npieces;
	struct tg_piece	*o_pieces;
	struct tg_piece	 o_inline[TG_INLINE_PIECES];
};

/*
 * The storage the engine applies to. apply() gets one piece: the span
 * [off, off+len) inside op's span and buf pointing at that part of op->buf
 * (NULL for types without data). Both return 0 or -errno.
 */
struct tg_backend {
	int	(*apply)(void *ctx, struct tg_op *op, uint64_t off,
		    uint64_t len, void *buf);
	int	(*flush)(void *ctx);
	void	*ctx;
};

struct tg_params {
	unsigned	groups;		/* >= 1 */
	unsigned	tasks;		/* per group, >= 1 */
	uint64_t	range_size;	/* power of two */
	enum wake_policy wake;		/* how idle tasks and the flusher are
					 * woken (wake.h); 0 = WAKE_ADAPTIVE */
	uint32_t	inline_ns;	/* apply eligible ops in tg_submit while
					 * the mean apply time is below this
					 * (ns); 0 = always hand off */
	int		inline_flush;	/* run a FLUSH with nothing before it
					 * in tg_submit */
};

struct tg_stats {
	uint64_t	submitted;
	uint64_t	completed;
	uint64_t	watermark;	/* all ops <= this are complete */
	unsigned	gated;		/* held at the frontier gate */
	unsigned	inflight;	/* submitted, not complete */
	unsigned	groups;
	unsigned	main_depth[64];	/* per group, first 64 groups */
	unsigned	table_depth[64];
	uint64_t	wakeups;	/* sleeping tasks and flusher woken */
	uint64_t	signals;	/* signals sent (woke a sleeper or
					 * reached one about to sleep) */
	uint64_t	mini_moves;	/* pieces queued behind a conflict */
	uint64_t	inlined;	/* ops applied inside tg_submit */
	uint64_t	apply_ns;	/* mean apply time (moving average) */
};

/* Returns 0 or -errno (-EINVAL for bad params). */
int tg_create(struct tg **out, const struct tg_params *p,
    const struct tg_backend *be);
/*
 * Hands op to the engine. Returns 0, -EINVAL if the ordering contract is
 * broken (seq not increasing, frontier decreasing or >= seq, empty span) or
 * -ENOMEM; on error the op is not taken and done is never called.
 */
int tg_submit(struct tg *tg, struct tg_op *op);
/*
 * As tg_submit, except that an op tg_submit would apply inline is only
 * claimed: its range is held as if a task were applying it, and it returns
 * 1. The dispatcher applies it with tg_run_claimed, which lets it start
 * something else first (the primary sends the op's frame to the mirror);
 * any other call into the engine applies it first, so nothing newer is
 * queued behind it. At most one op is claimed at a time.
 */
int tg_submit_claim(struct tg *tg, struct tg_op *op);
/*
 * Applies op on the caller's thread, as tg_submit would inline, and returns
 * 1 once done() has run; when tg_submit would not, returns -EAGAIN and
 * takes nothing (the op may then go to tg_submit). So op's data (buf or
 * iov) may be memory the caller reuses as soon as this returns: the mirror
 * applies a payload straight from its input buffer.
 */
int tg_try_inline(struct tg *tg, struct tg_op *op);
/*
 * Bytes tg_submit allocates for an op over [off, off + len): one piece
 * per range it touches, once there are more than the op keeps itself
 * (TG_INLINE_PIECES); else 0.
 * The daemons count them in their memory budgets: a 4 GiB TRIM over 64 KiB
 * ranges takes 3.5 MiB.
 */
size_t tg_op_extra(const struct tg *tg, uint64_t off, uint64_t len);
/* Applies the op tg_submit_claim claimed, if any (done() runs inside). */
void tg_run_claimed(struct tg *tg);
/* Waits until every submitted operation has completed and its done()
 * has returned; a claimed op is applied first. */
void tg_drain(struct tg *tg);
/* Drains, stops the threads, frees the engine. */
void tg_destroy(struct tg *tg);
void tg_get_stats(struct tg *tg, struct tg_stats *st);

#endif
