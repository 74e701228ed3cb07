/* status.c: see status.h. */
#include <stdio.h>

#include <jansson.h>

#include "common/config.h"
#include "common/cr.h"
#include "common/status.h"
#include "common/stream.h"
#include "common/tg.h"
#include "common/util.h"
#include "proto/wire.h"

json_t *
status_str_or_null(const char *s)
{
	return s != NULL && s[0] != '\0' ? json_string(s) : json_null();
}

json_t *
status_connection(const char *state, const char *peer, time_t since)
{
	return json_pack("{s:s, s:o, s:I}", "state", state,
	    "peer", status_str_or_null(peer), "since", (json_int_t)since);
}

json_t *
status_base(const struct config *cfg, const char *role, time_t started,
    struct tg *tg)
{
	struct tg_stats st;
	json_t *groups = json_array();
	unsigned i;

	tg_get_stats(tg, &st);
	for (i = 0; i < st.groups && i < ARRAY_SIZE(st.main_depth); i++)
		json_array_append_new(groups, json_pack("{s:i, s:i}",
		    "main", (int)st.main_depth[i],
		    "table", (int)st.table_depth[i]));
	return json_pack("{s:s, s:s, s:s, s:o, "
	    "s:{s:I, s:I, s:f, s:I, s:i}, s:I, s:{s:s, s:i}}",
	    "volume", cfg->vol_name,
	    "role", role,
	    "mode", config_mode_name(cfg->mode),
	    "groups", groups,
	    "engine", "ops", (json_int_t)st.submitted,
	    "inline_ops", (json_int_t)st.inlined,
	    "apply_us", (double)st.apply_ns / 1000.0,
	    "polls", (json_int_t)stream_loop_polls(),
	    "poll_window_us", (int)stream_loop_window_us(),
	    "uptime_s", (json_int_t)(time(NULL) - started),
	    "version", "duet", DUET_VERSION, "protocol", WIRE_VERSION);
}

static json_t *
gen_str(uint64_t g)
{
	char buf[17];

	snprintf(buf, sizeof(buf), "%016llx", (unsigned long long)g);
	return json_string(buf);
}

void
status_generation(json_t *o, const struct cr *c)
{
	json_t *hist = json_array();
	char u[37];

	for (int i = 0; i < META_HISTORY && c->c_m.md_history[i] != 0; i++)
		json_array_append_new(hist, gen_str(c->c_m.md_history[i]));
	meta_uuid_str(c->c_m.md_uuid, u);
	json_object_set_new(o, "uuid", meta_has_uuid(&c->c_m) ?
	    json_string(u) : json_null());
	json_object_set_new(o, "generation", json_pack("{s:o, s:o}",
	    "current", c->c_m.md_gen ? gen_str(c->c_m.md_gen) : json_null(),
	    "history", hist));
	json_object_set_new(o, "activity_log", json_pack("{s:I, s:I, s:I, s:I}",
	    "hot", (json_int_t)c->c_m.md_al_count,
	    "capacity", (json_int_t)c->c_al_cap,
	    "commits", (json_int_t)c->c_al_commits,
	    "bitmap_commits", (json_int_t)c->c_bm_commits));
}
