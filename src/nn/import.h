/* Importers into the engine's IR (private to src/nn). */
#ifndef VULTUS_NN_IMPORT_H
#define VULTUS_NN_IMPORT_H

#include "nn/graph.h"
#include "nn/weights.h"

#include <jansson.h>

/* Translates a parsed TF.js model.json (GraphDef as JSON) into a new graph whose constants
 * come from `weights`. The graph copies what it needs; weights may be freed afterwards. */
int nn_import_tfjs(json_t *root, const nn_weights *weights, nn_graph **out);

#endif
