/*
 * A Mosquitto 2 plugin that keeps dmconf's runs on one broker apart. A
 * run is a file in the runs folder, named by the run's tag (a random
 * value of 12 to 64 lowercase hex digits) and holding the password of the
 * run's service identity; a run adds its file when it starts and removes
 * it when it ends. The plugin is loaded once per listener:
 *
 *   plugin /usr/lib/dmconf/mosquitto-run-ids.so
 *   plugin_opt_runs /mosquitto/runs
 *   plugin_opt_role device          (or: service)
 *
 * device:  a client logs in, whatever its user name and password, when
 *          its client id holds the tag of a run (IoT Hub's SAS tokens
 *          cannot be checked here, so the client id is what a run
 *          controls): a neighbour on the machine cannot log in as a
 *          device.
 * service: a client logs in as dmconf-service-<tag> with that run's
 *          password, and reads and writes only devices/<id>/... where
 *          <id> holds <tag>: a run's platform sees its own devices and
 *          never those of another run on the same broker.
 *
 * Built by scripts/build-images.sh into the offline image.
 */
#include <dirent.h>
#include <stdio.h>
#include <string.h>

#include <mosquitto.h>
#include <mosquitto_broker.h>
#include <mosquitto_plugin.h>

/* At least this long, so a tag cannot be guessed in a run's lifetime. */
#define MIN_TAG 12
#define MAX_TAG 64
#define MAX_PASSWORD 256
#define SERVICE "dmconf-service-"
#define DEVICES "devices/"

struct scope {
	mosquitto_plugin_id_t *self;
	char *runs;
	int service;
};

static int is_tag(const char *s)
{
	size_t n = strlen(s);

	if (n < MIN_TAG || n > MAX_TAG) {
		return 0;
	}
	for (; *s != '\0'; s++) {
		if (!((*s >= '0' && *s <= '9') || (*s >= 'a' && *s <= 'f'))) {
			return 0;
		}
	}
	return 1;
}

/* Whether the first `len` characters of `s` hold `tag`. */
static int holds(const char *s, size_t len, const char *tag)
{
	size_t n = strlen(tag);

	for (size_t i = 0; i + n <= len; i++) {
		if (strncmp(s + i, tag, n) == 0) {
			return 1;
		}
	}
	return 0;
}

/* Whether `id` holds the tag of a run that is on. */
static int of_a_run(const struct scope *sc, const char *id)
{
	DIR *dir = opendir(sc->runs);
	struct dirent *e;
	int found = 0;

	if (dir == NULL) {
		return 0;
	}
	while (!found && (e = readdir(dir)) != NULL) {
		found = is_tag(e->d_name) && holds(id, strlen(id), e->d_name);
	}
	closedir(dir);
	return found;
}

/* Whether `password` is that of run `tag`; compared in constant time. */
static int run_password(const struct scope *sc, const char *tag, const char *password)
{
	char path[4096];
	char kept[MAX_PASSWORD];
	unsigned char diff = 0;
	size_t n, given;
	FILE *f;

	if (!is_tag(tag) || password == NULL) {
		return 0;
	}
	if (snprintf(path, sizeof path, "%s/%s", sc->runs, tag) >= (int)sizeof path) {
		return 0;
	}
	f = fopen(path, "r");
	if (f == NULL) {
		return 0;
	}
	n = fread(kept, 1, sizeof kept - 1, f);
	fclose(f);
	kept[n] = '\0';
	given = strlen(password);
	if (n == 0 || given != n) {
		return 0;
	}
	for (size_t i = 0; i < n; i++) {
		diff |= (unsigned char)(kept[i] ^ password[i]);
	}
	return diff == 0;
}

static const char *service_tag(struct mosquitto *client)
{
	const char *user = mosquitto_client_username(client);

	if (user == NULL || strncmp(user, SERVICE, strlen(SERVICE)) != 0) {
		return NULL;
	}
	return user + strlen(SERVICE);
}

static int on_basic_auth(int event, void *event_data, void *userdata)
{
	struct mosquitto_evt_basic_auth *ed = event_data;
	struct scope *sc = userdata;
	const char *id = mosquitto_client_id(ed->client);

	(void)event;
	if (sc->service) {
		const char *tag = service_tag(ed->client);
		if (tag != NULL && run_password(sc, tag, ed->password)) {
			return MOSQ_ERR_SUCCESS;
		}
		mosquitto_log_printf(MOSQ_LOG_NOTICE,
			"dmconf: refused service client '%s': not the login of a run",
			id != NULL ? id : "");
		return MOSQ_ERR_AUTH;
	}
	if (id != NULL && of_a_run(sc, id)) {
		return MOSQ_ERR_SUCCESS;
	}
	mosquitto_log_printf(MOSQ_LOG_NOTICE,
		"dmconf: refused client '%s': not a device of a run",
		id != NULL ? id : "");
	return MOSQ_ERR_AUTH;
}

/* The service identity of a run: devices of that run only. */
static int on_acl_check(int event, void *event_data, void *userdata)
{
	struct mosquitto_evt_acl_check *ed = event_data;
	const char *tag = service_tag(ed->client);
	const char *id, *end;

	(void)event;
	(void)userdata;
	if (tag == NULL || strncmp(ed->topic, DEVICES, strlen(DEVICES)) != 0) {
		return MOSQ_ERR_ACL_DENIED;
	}
	/* A filter such as devices/+/messages/events/# is let through; each
	 * message it matches is checked on its way to the client. */
	if (ed->access == MOSQ_ACL_SUBSCRIBE || ed->access == MOSQ_ACL_UNSUBSCRIBE) {
		return MOSQ_ERR_SUCCESS;
	}
	id = ed->topic + strlen(DEVICES);
	end = strchr(id, '/');
	if (holds(id, end != NULL ? (size_t)(end - id) : strlen(id), tag)) {
		return MOSQ_ERR_SUCCESS;
	}
	return MOSQ_ERR_ACL_DENIED;
}

int mosquitto_plugin_version(int supported_version_count, const int *supported_versions)
{
	for (int i = 0; i < supported_version_count; i++) {
		if (supported_versions[i] == 5) {
			return 5;
		}
	}
	return -1;
}

int mosquitto_plugin_init(mosquitto_plugin_id_t *identifier, void **userdata,
	struct mosquitto_opt *options, int option_count)
{
	struct scope *sc = mosquitto_calloc(1, sizeof *sc);
	const char *role = NULL;
	int rc;

	if (sc == NULL) {
		return MOSQ_ERR_NOMEM;
	}
	for (int i = 0; i < option_count; i++) {
		if (strcmp(options[i].key, "runs") == 0) {
			sc->runs = mosquitto_strdup(options[i].value);
		} else if (strcmp(options[i].key, "role") == 0) {
			role = options[i].value;
		}
	}
	if (sc->runs == NULL || role == NULL
		|| (strcmp(role, "device") != 0 && strcmp(role, "service") != 0)) {
		mosquitto_log_printf(MOSQ_LOG_ERR,
			"dmconf: plugin_opt_runs and plugin_opt_role (device or service) are needed");
		mosquitto_free(sc->runs);
		mosquitto_free(sc);
		return MOSQ_ERR_INVAL;
	}
	sc->self = identifier;
	sc->service = strcmp(role, "service") == 0;
	*userdata = sc;
	rc = mosquitto_callback_register(identifier, MOSQ_EVT_BASIC_AUTH, on_basic_auth, NULL, sc);
	if (rc == MOSQ_ERR_SUCCESS && sc->service) {
		rc = mosquitto_callback_register(identifier, MOSQ_EVT_ACL_CHECK, on_acl_check, NULL, sc);
	}
	return rc;
}

int mosquitto_plugin_cleanup(void *userdata, struct mosquitto_opt *options, int option_count)
{
	struct scope *sc = userdata;

	(void)options;
	(void)option_count;
	if (sc == NULL) {
		return MOSQ_ERR_SUCCESS;
	}
	mosquitto_callback_unregister(sc->self, MOSQ_EVT_BASIC_AUTH, on_basic_auth, NULL);
	if (sc->service) {
		mosquitto_callback_unregister(sc->self, MOSQ_EVT_ACL_CHECK, on_acl_check, NULL);
	}
	mosquitto_free(sc->runs);
	mosquitto_free(sc);
	return MOSQ_ERR_SUCCESS;
}
