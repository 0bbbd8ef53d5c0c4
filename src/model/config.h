#pragma once
// The model's configuration is the plain HF config struct, which lives in io (io knows no
// model); re-exported here so model code keeps its include.
#include "io/hf_config.h"
