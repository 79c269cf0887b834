/*
 * tier_service.h — yaowei.tier.v1.TierScoringService: the method table, the handlers
 * and the service state that app init loads.
 *
 * State, all on the loop thread:
 * - the policy in force (persisted in tier_policies, the highest version);
 * - the newest snapshot of creator profile (tier_population.h), read by the refresher
 *   (tier_refresh.h) and saved in tier_creators;
 * - the population: that snapshot scored under the policy. Populations are built on
 *   the libuv thread pool (a refresh or a policy change starts a build; a build asked
 *   for during another runs right after it) and swapped in on the loop; each one built
 *   is then saved by a write job (one save at a time; the newest wins).
 *
 * ScoreCreator / BatchScoreCreators read the creators and their stats fresh from
 * creator profile (BatchGetCreators and BatchGetCreatorStats, in parallel, each with
 * the inbound call as parent, so with its deadline; --creator-profile-timeout-ms when it
 * has none), score them under the policy in force with the population's priors, and
 * place them in the population for percentile and rising. RefreshPopulation triggers
 * a refresh and waits (a list of waiting calls and one timer for their deadlines) until
 * a population built from a refresh that started after it is in force, or that refresh
 * failed. The other methods answer from memory (BatchGetCreatorTiers from the newest
 * snapshot under the policy in force). The state outlives fini until every build, save,
 * policy read, refresher call in flight and its timers have completed.
 *
 * Several replicas may serve over one PostgreSQL database: tier_replicas.c says how they
 * agree on the policy (and why the population needs nothing), and what keeps answering
 * while the database is away (every method from memory; UpdateTierPolicy fails
 * UNAVAILABLE).
 */
#ifndef TIER_SERVICE_H
#define TIER_SERVICE_H

#include <stddef.h>

#include "common/app.h"
#include "common/server.h"

#ifdef __cplusplus
extern "C" {
#endif

#define TIER_SERVICE_NAME "yaowei.tier.v1.TierScoringService"

/** Deadline of each of the refresher's calls to creator profile. */
#define TIER_REFRESH_CALL_TIMEOUT_MS 10000

/** The service and its eight methods. */
extern const yw_service_t tier_service;

/** Options of tier scoring besides the common ones: --refresh-interval-ms and
 * --creator-profile-timeout-ms. */
#define TIER_N_OPTIONS 2
extern const yw_option_t tier_options[TIER_N_OPTIONS];

/**
 * yw_app_def_t.init: reads the options, loads the policy and the saved population
 * (yw_store_run_sync) and scores it, connects to --creator-profile-addr (common/client.h)
 * and schedules the first refresh. Returns 0, or a negative errno with a message in `err`
 * (nothing is left allocated).
 */
int tier_service_init(yw_app_t *app, char *err, size_t errlen);

/** yw_app_def_t.fini: stops refreshing and closes the peer; the state goes when idle. */
void tier_service_fini(yw_app_t *app);

/**
 * The yw_store_listen() callback of TIER_POLICY_CHANNEL (tier_store.h) that init
 * registers, in tier_replicas.c; `arg` is the app (its state is NULL from fini on, when
 * notices are ignored: the store, with its listener, outlives the state). A notice of a
 * version not newer than the one in force (this replica's own update, or one already
 * read) is ignored; any other payload, and NULL (LISTEN came into force, at start or
 * after a reconnection: notices may have been missed), reads the policy in force from the database and puts it in force if
 * it is newer. Loop thread. Public for tests that stand for another replica.
 */
void tier_on_policy_notice(void *arg, const char *payload);

/**
 * The tier_scoring app: the service, its options, store, init and fini. main.c runs it
 * (yw_app_main()); unit tests of the handlers open it without serving (yw_app_open()).
 */
extern const yw_app_def_t tier_app;

#ifdef __cplusplus
}
#endif
#endif
