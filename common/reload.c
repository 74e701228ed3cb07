/* reload.c: see reload.h. */
#include <stdlib.h>

#include "common/config.h"
#include "common/log.h"
#include "common/notify.h"
#include "common/reload.h"

static void
needs_restart(void *arg, const char *key)
{
	int *n = arg;

	(*n)++;
	log_warnx("reload: %s changed: takes effect after a restart", key);
}

void
reload_config(const char *path, const struct config *cur)
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
		config_diff(cur, next, needs_restart, &n);
		log_info("reload: %s read, %d key%s changed", path, n,
		    n == 1 ? "" : "s");
	}
	free(next);
	notify_ready();
}
