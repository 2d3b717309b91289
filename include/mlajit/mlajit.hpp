// mlajit C++ API: mlajit::Engine (one per device) and mlajit::DecodeArgs. See runtime/engine.hpp.
#pragma once

#include "runtime/engine.hpp"
