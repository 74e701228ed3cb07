/* reload.c: see reload.h. */
#include <stdlib.h>

#include "common/config.h"
#include "common/log.h"
#include "common/notify.h"
#include "common/reload.h"

static void
changed(void *arg, const char *key, int live)
{
	int *n = arg;

	(*n)++;
	if (live)
		log_info("reload: %s changed: in effect now", key);
	else
		log_warnx("reload: %s changed: takes effect after a restart",
		    key);
}

void
reload_config(const char *path, struct config *cur,
    void (*applied)(void *arg), void *arg)
{
	struct config *next;
	char err[8192];
	int n = 0;

	notify_reloading();
	if ((next = calloc(1, sizeof(*next))) == NULL) {
		log_warn("reload");
	} else if (config_load(path, next, err, sizeof(err)) != 0) {
		log_warnx("reload: %s; keeping the running configuration", err);
	} else {
		config_diff(cur, next, changed, &n);
		if (config_take_live(cur, next) > 0 && applied != NULL)
			applied(arg);
		log_info("reload: %s read, %d key%s changed", path, n,
		    n == 1 ? "" : "s");
	}
	free(next);
	notify_ready();
}
