/* daemon.c: see daemon.h. */
#include <getopt.h>
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
#include "common/tls.h"

/* Asked for (-h): on stdout, exit 0; a mistake: on stderr, EX_USAGE. */
static void __attribute__((noreturn))
usage(const char *prog, int asked)
{
	fprintf(asked ? stdout : stderr, "usage: %s -c FILE [-f] [-t] [-v]\n"
	    "       %s -h\n"
	    "  -c FILE  configuration file (duet.conf(5))\n"
	    "  -f       stay in the foreground, log to stderr\n"
	    "  -t       check the configuration, print \"configuration OK\", exit\n"
	    "  -v       log more\n"
	    "  -h, --help  print this and exit\n", prog, prog);
	exit(asked ? 0 : EX_USAGE);
}

int
daemon_setup(int argc, char **argv, const char *prog, int tls_server,
    struct config *cfg,
    int (*check)(const struct config *, char *, size_t))
{
	const char *conf = NULL;
	char err[8192];
	int ch, fg = 0, test = 0, verbose = 0;

	static const struct option longopts[] = {
		{ "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 },
	};

	while ((ch = getopt_long(argc, argv, "c:ftvh", longopts, NULL)) != -1) {
		switch (ch) {
		case 'c': conf = optarg; break;
		case 'f': fg = 1; break;
		case 't': test = 1; break;
		case 'v': verbose++; break;
		case 'h': usage(prog, 1);
		default: usage(prog, 0);
		}
	}
	if (conf == NULL || optind != argc)
		usage(prog, 0);
	log_init(prog, fg || test, verbose);
	if (config_load(conf, cfg, err, sizeof(err)) != 0 ||
	    (check != NULL && check(cfg, err, sizeof(err)) != 0)) {
		fprintf(stderr, "%s: %s\n", prog, err);
		exit(EX_CONFIG);
	}
	if (test) {
		SSL_CTX *ctx = tls_ctx_new(cfg, tls_server, err, sizeof(err));

		if (ctx == NULL) {
			fprintf(stderr, "%s: %s\n", prog, err);
			exit(EX_CONFIG);
		}
		SSL_CTX_free(ctx);
		printf("configuration OK\n");
		exit(0);
	}
	log_setvolume(cfg->vol_name);
	/* OpenSSL and the sockets write to peers that may be gone. */
	signal(SIGPIPE, SIG_IGN);
	return fg;
}

int
volume_flush_final(struct storage *st, struct cr *c)
{
	int rc;

	storage_flush_wait(st);
	if ((rc = storage_flush(st)) != 0)
		log_warnx("storage: final flush: %s", strerror(-rc));
	cr_check_flushes(c);
	return rc;
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
