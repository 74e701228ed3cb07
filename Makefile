# duet: one Makefile for the daemons, the libraries and every test.
#   make            build (build/)
#   make check      deps, build, every test; ends with "N passed, N failed"
#   make check SAN=1  the same under ASan+UBSan, built in build-san/
#   make tsan       the threaded modules' unit suites under TSan (build-tsan/;
#                   make check runs them too)
#   make fuzz       libFuzzer targets (clang)
#   make demo       deps, build, a primary and a mirror on loopback
#   make deps       install the Debian packages (root) or print the command

PREFIX  ?= /usr/local
DESTDIR ?=
CC      ?= cc

ifeq ($(SAN),1)
B        := build-san
SANFLAGS := -fsanitize=address,undefined -fno-omit-frame-pointer -fno-sanitize-recover=all
else ifeq ($(SAN),thread)
# gcc warns that TSan does not model atomic_thread_fence (common/wake.c).
# An unmodelled fence can only add reports, never hide a race, so a clean
# run still means something.
B        := build-tsan
SANFLAGS := -fsanitize=thread -fno-omit-frame-pointer \
            $(shell $(CC) -Werror -Wno-tsan -E -x c /dev/null >/dev/null 2>&1 && echo -Wno-tsan)
else
B        := build
SANFLAGS :=
endif

PKGS     := libevent libevent_pthreads libconfig openssl jansson libsystemd
CPPFLAGS += -I. -D_GNU_SOURCE
CFLAGS   ?= -O2 -g
CFLAGS   += -std=c11 -Wall -Wextra -Werror -pthread $(SANFLAGS) \
            $(shell pkg-config --cflags $(PKGS) 2>/dev/null)
LDFLAGS  += -pthread $(SANFLAGS)
LDLIBS   := $(shell pkg-config --libs $(PKGS) 2>/dev/null)
CHECK_LIBS := $(shell pkg-config --libs check 2>/dev/null)

PROTO_SRC  := $(wildcard proto/*.c)
COMMON_SRC := $(wildcard common/*.c)
MIRROR_SRC := $(wildcard mirror/*.c)
PRIMARY_SRC:= $(wildcard primary/*.c)
CTL_SRC    := $(wildcard ctl/*.c)
UNIT_SRC   := $(wildcard tests/unit/check_*.c)
PEER_SRC   := $(wildcard tests/peer/*.c)
FAULT_SRC  := $(wildcard tests/fault/*.c)
BENCH_SRC  := $(wildcard bench/*.c)
FUZZ_SRC   := $(wildcard tests/fuzz/fuzz_*.c)

obj = $(patsubst %.c,$(B)/%.o,$(1))

LIBPROTO  := $(B)/libproto.a
LIBCOMMON := $(B)/libcommon.a
BINS      := $(B)/duet-mirror \
             $(if $(PRIMARY_SRC),$(B)/duet-primary) \
             $(if $(CTL_SRC),$(B)/duetctl) \
             $(if $(PEER_SRC),$(B)/duet-testpeer)
UNITS     := $(patsubst tests/unit/%.c,$(B)/tests/%,$(UNIT_SRC))
BENCHES   := $(patsubst bench/%.c,$(B)/bench/%,$(BENCH_SRC))
FUZZERS   := $(patsubst tests/fuzz/%.c,build-fuzz/%,$(FUZZ_SRC))
FAULTPROXY:= $(if $(FAULT_SRC),$(B)/tests/duet-faultproxy)
# The suites of the modules that run threads: the engine, its wake-ups, the
# pool and the stream's sender thread.
TSAN_UNITS:= $(patsubst %,build-tsan/tests/check_%,tg wake pool stream resolve)

.SECONDARY:
.PHONY: all check deps demo fuzz fuzz-if-clang tsan bench clean install
all: $(BINS) $(UNITS) $(BENCHES) $(FAULTPROXY)

$(B)/%.o: %.c $(wildcard */*.h) $(wildcard tests/*/*.h) Makefile
	@mkdir -p $(dir $@)
	$(CC) $(CPPFLAGS) $(CFLAGS) -c -o $@ $<

$(LIBPROTO): $(call obj,$(PROTO_SRC))
	$(AR) rcs $@ $^
$(LIBCOMMON): $(call obj,$(COMMON_SRC))
	$(AR) rcs $@ $^

LIBS := $(LIBCOMMON) $(LIBPROTO)

$(B)/duet-mirror: $(call obj,$(MIRROR_SRC)) $(LIBS)
	$(CC) $(LDFLAGS) -o $@ $^ $(LDLIBS)
$(B)/duet-primary: $(call obj,$(PRIMARY_SRC)) $(LIBS)
	$(CC) $(LDFLAGS) -o $@ $^ $(LDLIBS)
$(B)/duetctl: $(call obj,$(CTL_SRC)) $(LIBS)
	$(CC) $(LDFLAGS) -o $@ $^ $(LDLIBS)
$(B)/duet-testpeer: $(call obj,$(PEER_SRC)) $(LIBS)
	$(CC) $(LDFLAGS) -o $@ $^ $(LDLIBS)
$(B)/tests/duet-faultproxy: $(call obj,$(FAULT_SRC))
	$(CC) $(LDFLAGS) -o $@ $^ $(LDLIBS)
$(B)/tests/%: $(B)/tests/unit/%.o $(LIBS)
	@mkdir -p $(dir $@)
	$(CC) $(LDFLAGS) -o $@ $^ $(CHECK_LIBS) $(LDLIBS)
$(B)/bench/%: $(B)/bench/%.o $(B)/bench/util/benchutil.o $(LIBS)
	$(CC) $(LDFLAGS) -o $@ $^ $(LDLIBS)

# libFuzzer targets: clang only, their own directory, the sources they need.
FUZZ_CFLAGS := -g -O1 -fsanitize=fuzzer,address,undefined -I. -D_GNU_SOURCE
build-fuzz/%: tests/fuzz/%.c $(PROTO_SRC) $(wildcard proto/*.h)
	@mkdir -p build-fuzz
	clang $(FUZZ_CFLAGS) -o $@ $< $(PROTO_SRC)
fuzz: $(FUZZERS)

deps:
	@sh tests/deps.sh

tsan:
	@$(MAKE) --no-print-directory SAN=thread $(TSAN_UNITS)

check: deps
	@$(MAKE) --no-print-directory all
	@$(MAKE) --no-print-directory fuzz-if-clang
	@$(MAKE) --no-print-directory tsan
	@B=$(B) SAN=$(SAN) sh tests/run.sh

fuzz-if-clang:
	@if command -v clang >/dev/null 2>&1; then \
		$(MAKE) --no-print-directory fuzz; fi

demo: deps
	@$(MAKE) --no-print-directory all
	@sh tests/demo.sh $(B)

bench: all
	@sh bench/run.sh $(B)

# Units and tmpfiles go under PREFIX too: systemd reads /usr/local/lib/
# systemd/system (and /usr/lib/... for PREFIX=/usr). The units in conf/
# name /usr/local/sbin; another PREFIX is written into the installed copy.
UNITDIR     ?= $(PREFIX)/lib/systemd/system
TMPFILESDIR ?= $(PREFIX)/lib/tmpfiles.d

install: all
	install -d $(DESTDIR)$(PREFIX)/sbin $(DESTDIR)$(PREFIX)/share/man/man8 \
		$(DESTDIR)$(PREFIX)/share/man/man5 $(DESTDIR)$(UNITDIR) \
		$(DESTDIR)$(TMPFILESDIR) $(DESTDIR)$(PREFIX)/share/doc/duet
	install -m 0755 $(filter-out %testpeer,$(BINS)) $(DESTDIR)$(PREFIX)/sbin/
	install -m 0644 $(wildcard */*.8) $(DESTDIR)$(PREFIX)/share/man/man8/
	install -m 0644 $(wildcard */*.5) $(DESTDIR)$(PREFIX)/share/man/man5/
	install -m 0644 conf/duet.conf.example $(DESTDIR)$(PREFIX)/share/doc/duet/
	for u in $(wildcard conf/*.service); do \
		sed 's|/usr/local/sbin/|$(PREFIX)/sbin/|g' $$u \
		    >$(DESTDIR)$(UNITDIR)/$${u#conf/} && \
		chmod 0644 $(DESTDIR)$(UNITDIR)/$${u#conf/} || exit 1; \
	done
	install -m 0644 conf/duet.tmpfiles $(DESTDIR)$(TMPFILESDIR)/duet.conf

clean:
	rm -rf build build-san build-tsan build-fuzz
