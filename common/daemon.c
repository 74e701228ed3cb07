/* daemon.c: see daemon.h. */
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sysexits.h>
#include <unistd.h>

#include "common/config.h"
#include "common/daemon.h"
#include "common/log.h"
#include "common/cr.h"
#include "common/storage.h"

static void
usage(const char *prog)
{
	fprintf(stderr, "usage: %s -c FILE [-f] [-t] [-v]\n"
	    "  -c FILE  configuration file (duet.conf(5))\n"
	    "  -f       stay in the foreground, log to stderr\n"
	    "  -t       check the configuration, print \"configuration OK\", exit\n"
	    "  -v       log more\n", prog);
	exit(EX_USAGE);
}

int
daemon_setup(int argc, char **argv, const char *prog, struct config *cfg,
    int (*check)(const struct config *, char *, size_t))
{
	const char *conf = NULL;
	char err[8192];
	int ch, fg = 0, test = 0, verbose = 0;

	while ((ch = getopt(argc, argv, "c:ftvh")) != -1) {
		switch (ch) {
		case 'c': conf = optarg; break;
		case 'f': fg = 1; break;
		case 't': test = 1; break;
		case 'v': verbose++; break;
		default: usage(prog);
		}
	}
	if (conf == NULL || optind != argc)
		usage(prog);
	log_init(prog, fg || test, verbose);
	if (config_load(conf, cfg, err, sizeof(err)) != 0 ||
	    (check != NULL && check(cfg, err, sizeof(err)) != 0)) {
		fprintf(stderr, "%s: %s\n", prog, err);
		exit(EX_CONFIG);
	}
	if (test) {
		printf("configuration OK\n");
		exit(0);
	}
	log_setvolume(cfg->vol_name);
	/* OpenSSL and the sockets write to peers that may be gone. */
	signal(SIGPIPE, SIG_IGN);
	return fg;
}

int
volume_open(const struct config *cfg, struct storage *st, struct cr *c)
{
	char err[8192];

	if (storage_open(st, cfg->vol_path, cfg->vol_size, err,
	    sizeof(err)) != 0) {
		log_warnx("volume.path: %s", err);
		return EX_IOERR;
	}
	if (cr_open(c, cfg, err, sizeof(err)) < 0) {
		log_warnx("volume.metadata: %s", err);
		return strstr(err, "the configuration says") ? EX_CONFIG :
		    EX_IOERR;
	}
	return 0;
}
