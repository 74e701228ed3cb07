/*
 * cr.c: see cr.h.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include <event2/event.h>
#include <openssl/rand.h>

#include "common/config.h"
#include "common/cr.h"
#include "common/log.h"
#include "common/util.h"

static uint64_t
first_ext(const struct cr *c, uint64_t off)
{
	return off / c->c_ext_size;
}

static uint64_t
end_ext(const struct cr *c, uint64_t off, uint64_t len)
{
	return MIN((off + len + c->c_ext_size - 1) / c->c_ext_size, c->c_nbits);
}

int
cr_test(const struct cr *c, uint64_t ext)
{
	return (c->c_bits[ext / 8] >> (ext % 8)) & 1;
}

static void
set_bit(struct cr *c, uint64_t ext)
{
	if (!cr_test(c, ext)) {
		c->c_bits[ext / 8] |= (uint8_t)(1u << (ext % 8));
		c->c_ndirty++;
		c->c_unsaved = c->c_set_unsaved = 1;
	}
}

void
cr_clear(struct cr *c, uint64_t ext)
{
	if (cr_test(c, ext)) {
		c->c_bits[ext / 8] &= (uint8_t)~(1u << (ext % 8));
		c->c_ndirty--;
		c->c_unsaved = 1;
	}
}

void
cr_mark(struct cr *c, uint64_t off, uint64_t len)
{
	c->c_nmarks++;
	for (uint64_t e = first_ext(c, off); e < end_ext(c, off, len); e++)
		set_bit(c, e);
	if (c->c_on_mark != NULL)
		c->c_on_mark(c->c_on_mark_arg, off, len);
}

void
cr_mark_all(struct cr *c)
{
	c->c_nmarks++;
	for (uint64_t e = 0; e < c->c_nbits; e++)
		set_bit(c, e);
	if (c->c_on_mark != NULL)
		c->c_on_mark(c->c_on_mark_arg, 0, c->c_nbits * c->c_ext_size);
}

void
cr_set_mark_hook(struct cr *c,
    void (*fn)(void *arg, uint64_t off, uint64_t len), void *arg)
{
	c->c_on_mark = fn;
	c->c_on_mark_arg = arg;
}

uint64_t
cr_next(const struct cr *c, uint64_t ext)
{
	while (ext < c->c_nbits) {
		if (ext % 8 == 0 && c->c_bits[ext / 8] == 0) {
			ext += 8;
			continue;
		}
		if (cr_test(c, ext))
			return ext;
		ext++;
	}
	return c->c_nbits;
}

void
cr_merge(struct cr *c, const uint8_t *bits)
{
	for (uint64_t e = 0; e < c->c_nbits; e++)
		if ((bits[e / 8] >> (e % 8)) & 1)
			set_bit(c, e);
}

static int
fail(struct cr *c, const char *err)
{
	if (!c->c_failed)
		log_warnx("volume.metadata: %s", err);
	c->c_failed = 1;
	return -1;
}

int
cr_save(struct cr *c)
{
	char err[4400];

	if (!c->c_unsaved)
		return 0;
	if (meta_write_bitmap(c->c_mf, &c->c_m, c->c_bits, err, sizeof(err)) != 0)
		return fail(c, err);
	c->c_unsaved = c->c_set_unsaved = 0;
	c->c_bm_commits++;
	return 0;
}

int
cr_commit(struct cr *c)
{
	char err[4400];

	if (meta_write(c->c_mf, &c->c_m, err, sizeof(err)) != 0)
		return fail(c, err);
	return 0;
}

int
cr_knows_gen(const struct meta *m, uint64_t gen)
{
	if (gen == 0)
		return 0;
	if (m->md_gen == gen)
		return 1;
	for (int i = 0; i < META_HISTORY; i++)
		if (m->md_history[i] == gen)
			return 1;
	return 0;
}

int
cr_new_gen(struct cr *c)
{
	uint64_t g = 0;

	while (g == 0)
		if (RAND_bytes((unsigned char *)&g, sizeof(g)) != 1)
			return fail(c, "no random bytes for a generation");
	if (c->c_m.md_gen != 0) {
		memmove(&c->c_m.md_history[1], &c->c_m.md_history[0],
		    (META_HISTORY - 1) * sizeof(uint64_t));
		c->c_m.md_history[0] = c->c_m.md_gen;
	}
	c->c_m.md_gen = g;
	c->c_m.md_flags &= ~META_F_PEER_HAS_GEN;
	return cr_commit(c);
}

static void
cr_tick(evutil_socket_t fd, short what, void *arg)
{
	struct cr *c = arg;

	(void)fd; (void)what;
	cr_retire(c, CR_RETIRE_NS);
	cr_save(c);
}

struct event *
cr_timer_new(struct cr *c, struct event_base *base)
{
	struct timeval tv = { 5, 0 };
	struct event *ev = event_new(base, -1, EV_PERSIST, cr_tick, c);

	if (ev != NULL)
		evtimer_add(ev, &tv);
	return ev;
}

/* ---- the activity log ------------------------------------------------ */

static void
al_remove(struct cr *c, uint32_t i)
{
	uint32_t last = --c->c_m.md_al_count;

	c->c_al_slot[c->c_m.md_al[i]] = -1;
	if (i != last) {
		c->c_m.md_al[i] = c->c_m.md_al[last];
		c->c_al_refs[i] = c->c_al_refs[last];
		c->c_al_tick[i] = c->c_al_tick[last];
		c->c_al_slot[c->c_m.md_al[i]] = (int32_t)i;
	}
}

/* Every extent of the AL, marked changed (in memory). */
static void
cr_mark_hot(struct cr *c)
{
	for (uint32_t i = 0; i < c->c_m.md_al_count; i++) {
		uint64_t a = c->c_m.md_al[i];

		if (a < c->c_nal)
			cr_mark(c, a * META_AL_EXTENT, META_AL_EXTENT);
	}
}

void
cr_set_durable(struct cr *c, const uint64_t *durable,
    const uint64_t *errors, int (*flush)(void *, int), void *arg)
{
	c->c_durable = durable;
	c->c_flush_errors = errors;
	c->c_errors_seen = __atomic_load_n(errors, __ATOMIC_ACQUIRE);
	c->c_durable_now = __atomic_load_n(durable, __ATOMIC_ACQUIRE);
	c->c_flush = flush;
	c->c_flush_arg = arg;
}

void
cr_check_flushes(struct cr *c)
{
	uint64_t d, e;

	if (c->c_durable == NULL)
		return;
	/* In this order: a failure is counted before any later flush's
	 * start is published (storage_flush). */
	d = __atomic_load_n(c->c_durable, __ATOMIC_ACQUIRE);
	e = __atomic_load_n(c->c_flush_errors, __ATOMIC_ACQUIRE);
	if (e != c->c_errors_seen) {
		c->c_errors_seen = e;
		if (c->c_m.md_flags & META_F_INCONSISTENT) {
			cr_mark_all(c);
			log_warnx("storage: a flush failed during a resync: "
			    "every extent is marked for resync");
		} else {
			cr_mark_hot(c);
			log_warnx("storage: a flush failed: the %u regions of "
			    "the activity log are marked for resync",
			    c->c_m.md_al_count);
		}
		cr_save(c);
	}
	c->c_durable_now = d;
}

/* Whether entry i's writes are on the disk, not only in the page cache
 * (as of the last cr_check_flushes). */
static int
al_durable(const struct cr *c, uint32_t i)
{
	return c->c_durable == NULL || c->c_al_tick[i] < c->c_durable_now;
}

/* The least recently used entry without references outside [a0, a1]
 * (the range being taken) whose writes are durable, or -1. */
static int64_t
al_victim(const struct cr *c, uint64_t a0, uint64_t a1)
{
	int64_t v = -1;

	for (uint32_t i = 0; i < c->c_m.md_al_count; i++)
		if (c->c_al_refs[i] == 0 && al_durable(c, i) &&
		    (c->c_m.md_al[i] < a0 || c->c_m.md_al[i] > a1) &&
		    (v < 0 || c->c_al_tick[i] < c->c_al_tick[v]))
			v = i;
	return v;
}

/*
 * No entry outside [a0, a1] can leave (al_victim found none). Idle ones
 * that wait for a flush get one: in the background while the AL may grow,
 * at once when it is full. 0: a flush succeeded, look again.
 */
static int
al_flush_for_room(struct cr *c, uint64_t a0, uint64_t a1)
{
	uint32_t i;

	if (c->c_flush == NULL)
		return -1;
	for (i = 0; i < c->c_m.md_al_count; i++)
		if (c->c_al_refs[i] == 0 &&
		    (c->c_m.md_al[i] < a0 || c->c_m.md_al[i] > a1))
			break;
	if (i == c->c_m.md_al_count)
		return -1;	/* every entry busy: nothing to flush for */
	if (c->c_m.md_al_count < META_AL_MAX) {
		(void)c->c_flush(c->c_flush_arg, 0);
		return -1;
	}
	if (c->c_flush(c->c_flush_arg, 1) != 0)
		return -1;
	cr_check_flushes(c);
	return 0;
}

int
cr_begin(struct cr *c, uint64_t off, uint64_t len, unsigned refs)
{
	uint64_t a, a0 = off / META_AL_EXTENT;
	uint64_t a1 = (off + (len ? len : 1) - 1) / META_AL_EXTENT;
	int changed = 0, evicted = 0;
	uint64_t now;
	int64_t v;

	if (c->c_failed)
		return -1;
	/* All or nothing: room for every extent that is not hot yet. */
	for (a = a0; a <= a1; a++) {
		if (c->c_al_slot[a] >= 0)
			continue;
		if (c->c_m.md_al_count >= c->c_al_cap)
			cr_check_flushes(c);
		while (c->c_m.md_al_count >= c->c_al_cap) {
			if ((v = al_victim(c, a0, a1)) < 0 &&
			    al_flush_for_room(c, a0, a1) == 0)
				v = al_victim(c, a0, a1);
			if (v < 0)
				break;
			al_remove(c, (uint32_t)v);
			evicted = 1;
		}
		if (c->c_m.md_al_count >= META_AL_MAX) {
			/* Every entry is busy: record the range instead. */
			cr_mark(c, off, len);
			return cr_save(c) == 0 ? 1 : -1;
		}
		c->c_al_slot[a] = (int32_t)c->c_m.md_al_count;
		c->c_m.md_al[c->c_m.md_al_count] = (uint32_t)a;
		c->c_al_refs[c->c_m.md_al_count] = 0;
		c->c_m.md_al_count++;
		changed = 1;
	}
	if (changed) {
		/* Bits set inside an evicted extent must reach the disk with
		 * the header that drops it. */
		if ((evicted && c->c_set_unsaved) ? cr_save(c) : cr_commit(c))
			return -1;
		c->c_al_commits++;
	}
	now = now_ns();
	for (a = a0; a <= a1; a++) {
		int32_t i = c->c_al_slot[a];

		c->c_al_refs[i] += refs;
		c->c_al_tick[i] = now;
	}
	return 0;
}

int
cr_retire(struct cr *c, uint64_t idle_ns)
{
	uint64_t now = now_ns();
	uint32_t i = 0;
	int n = 0, wait = 0;

	cr_check_flushes(c);
	while (i < c->c_m.md_al_count) {
		if (c->c_al_refs[i] == 0 && now - c->c_al_tick[i] >= idle_ns) {
			if (!al_durable(c, i)) {
				wait = 1;
				i++;
				continue;
			}
			al_remove(c, i);	/* moves the last entry to i */
			n++;
		} else
			i++;
	}
	if (wait && c->c_flush != NULL)
		(void)c->c_flush(c->c_flush_arg, 0);
	if (n == 0)
		return 0;
	c->c_al_commits++;
	/* The bits set inside them go to disk with the header. */
	return c->c_set_unsaved ? cr_save(c) : cr_commit(c);
}

void
cr_end(struct cr *c, uint64_t off, uint64_t len, unsigned refs, int tracked)
{
	uint64_t a, a0 = off / META_AL_EXTENT;
	uint64_t a1 = (off + (len ? len : 1) - 1) / META_AL_EXTENT;
	uint64_t now;

	if (!tracked)
		return;
	now = now_ns();
	for (a = a0; a <= a1; a++) {
		int32_t i = c->c_al_slot[a];

		VERIFY(i >= 0 && c->c_al_refs[i] >= refs);
		c->c_al_refs[i] -= refs;
		c->c_al_tick[i] = now;	/* a flush must begin after this */
	}
}

/* ---- open and close ----------------------------------------------------- */

static void
cr_free(struct cr *c)
{
	c->c_mf = NULL;
	FREE_AND_NULL(&c->c_bits);
	FREE_AND_NULL(&c->c_al_refs);
	FREE_AND_NULL(&c->c_al_tick);
	FREE_AND_NULL(&c->c_al_slot);
}

int
cr_open(struct cr *c, const struct config *cfg, char *err, size_t errlen)
{
	uint64_t bytes = meta_bitmap_bytes(cfg->vol_size, cfg->extent_size);
	uint32_t hot;
	int rc;

	memset(c, 0, sizeof(*c));
	snprintf(c->c_path, sizeof(c->c_path), "%s", cfg->vol_metadata);
	c->c_ext_size = cfg->extent_size;
	c->c_nbits = (cfg->vol_size + cfg->extent_size - 1) / cfg->extent_size;
	c->c_nal = (cfg->vol_size + META_AL_EXTENT - 1) / META_AL_EXTENT;
	c->c_al_cap = cfg->al_extents;
	c->c_bits = malloc(bytes + 1);
	c->c_al_refs = calloc(META_AL_MAX, sizeof(*c->c_al_refs));
	c->c_al_tick = calloc(META_AL_MAX, sizeof(*c->c_al_tick));
	c->c_al_slot = malloc(c->c_nal * sizeof(*c->c_al_slot));
	if (c->c_bits == NULL || c->c_al_refs == NULL || c->c_al_tick == NULL ||
	    c->c_al_slot == NULL) {
		snprintf(err, errlen, "%s: out of memory for the change record",
		    c->c_path);
		cr_free(c);
		return -1;
	}
	for (uint64_t a = 0; a < c->c_nal; a++)
		c->c_al_slot[a] = -1;
	rc = meta_open(c->c_path, cfg->vol_size, cfg->extent_size, &c->c_m,
	    c->c_bits, &c->c_mf, err, errlen);
	if (rc < 0) {
		cr_free(c);
		return -1;
	}
	for (uint64_t e = 0; e < c->c_nbits; e++)
		c->c_ndirty += cr_test(c, e);

	/* After a crash, whatever was hot may differ from the peer. */
	hot = c->c_m.md_al_count;
	if (!(c->c_m.md_flags & META_F_CLEAN) && hot > 0) {
		cr_mark_hot(c);
		log_warnx("volume.metadata: not stopped cleanly: %u hot "
		    "extents of the activity log (%u MiB each) marked for "
		    "resync", hot, META_AL_EXTENT >> 20);
	}
	/* A mirror's resync copies are not in its log (the primary has
	 * them), and a crash may have lost the ones not yet on disk. */
	if (!(c->c_m.md_flags & META_F_CLEAN) &&
	    (c->c_m.md_flags & META_F_INCONSISTENT)) {
		cr_mark_all(c);
		log_warnx("volume.metadata: not stopped cleanly during a "
		    "resync: every extent marked for resync");
	}
	c->c_m.md_al_count = 0;
	c->c_m.md_flags &= ~META_F_CLEAN;
	c->c_unsaved = 1;
	if (cr_save(c) != 0) {
		snprintf(err, errlen, "%s: cannot write it (logged above)",
		    c->c_path);
		meta_close(c->c_mf);
		cr_free(c);
		return -1;
	}
	return rc;
}

int
cr_close(struct cr *c, int clean)
{
	int rc = 0;

	if (c->c_mf == NULL)
		return 0;
	if (clean && !c->c_failed) {
		c->c_m.md_al_count = 0;
		c->c_m.md_flags |= META_F_CLEAN;
		c->c_unsaved = 1;
		rc = cr_save(c);
	}
	meta_close(c->c_mf);
	cr_free(c);
	return c->c_failed ? -1 : rc;
}
