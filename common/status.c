/* status.c: see status.h. */
#include <jansson.h>

#include "common/config.h"
#include "common/status.h"
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
	return json_pack("{s:s, s:s, s:s, s:o, s:I, s:{s:s, s:i}}",
	    "volume", cfg->vol_name,
	    "role", role,
	    "mode", config_mode_name(cfg->mode),
	    "groups", groups,
	    "uptime_s", (json_int_t)(time(NULL) - started),
	    "version", "duet", DUET_VERSION, "protocol", WIRE_VERSION);
}
