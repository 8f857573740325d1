/*
 * A Mosquitto 2 plugin for dmconf's device listener: it admits a client
 * only when its client id carries the run's tag, whatever its user name
 * and password (IoT Hub's SAS tokens cannot be checked here, so the
 * client id is what the run controls). Every device id the harness makes
 * for a run holds the tag, a random value kept with the run's other
 * secrets, so a neighbour on the machine cannot log in as a device, and
 * no client outside the run can publish where a platform under test
 * listens.
 *
 *   plugin /usr/lib/dmconf/mosquitto-run-ids.so
 *   plugin_opt_tag <the run's tag>
 *
 * Built by scripts/build-images.sh into the offline image.
 */
#include <string.h>

#include <mosquitto.h>
#include <mosquitto_broker.h>
#include <mosquitto_plugin.h>

/* At least this long, so a tag cannot be guessed in a run's lifetime. */
#define MIN_TAG 12

static mosquitto_plugin_id_t *self;
static char *tag;

static int on_basic_auth(int event, void *event_data, void *userdata)
{
	struct mosquitto_evt_basic_auth *ed = event_data;
	const char *id = mosquitto_client_id(ed->client);

	(void)event;
	(void)userdata;
	if (id != NULL && strstr(id, tag) != NULL) {
		return MOSQ_ERR_SUCCESS;
	}
	mosquitto_log_printf(MOSQ_LOG_NOTICE,
		"dmconf: refused client '%s': not a device of this run",
		id != NULL ? id : "");
	return MOSQ_ERR_AUTH;
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
	(void)userdata;
	for (int i = 0; i < option_count; i++) {
		if (strcmp(options[i].key, "tag") == 0) {
			tag = mosquitto_strdup(options[i].value);
		}
	}
	if (tag == NULL || strlen(tag) < MIN_TAG) {
		mosquitto_log_printf(MOSQ_LOG_ERR,
			"dmconf: plugin_opt_tag is missing or shorter than %d characters", MIN_TAG);
		return MOSQ_ERR_INVAL;
	}
	self = identifier;
	return mosquitto_callback_register(self, MOSQ_EVT_BASIC_AUTH, on_basic_auth, NULL, NULL);
}

int mosquitto_plugin_cleanup(void *userdata, struct mosquitto_opt *options, int option_count)
{
	(void)userdata;
	(void)options;
	(void)option_count;
	mosquitto_callback_unregister(self, MOSQ_EVT_BASIC_AUTH, on_basic_auth, NULL);
	mosquitto_free(tag);
	tag = NULL;
	return MOSQ_ERR_SUCCESS;
}
