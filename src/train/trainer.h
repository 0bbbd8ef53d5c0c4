#pragma once
// Pretraining a looped LM from scratch: every loop's readout is trained as a language model,
// and the exit gate learns when another loop stops helping (Ouro's adaptive-exit idea).
#include <ATen/ATen.h>

#include <string>
#include <vector>

#include "model/config.h"

namespace loopq::train {

struct TrainOptions {
  LoopLMConfig model;                 // shape; vocab_size is taken from the tokenizer
  std::string train_file, valid_file, tokenizer_path, out_dir;
  int64_t seqlen = 256, batch = 16, steps = 2000, warmup = 100;
  double lr = 3e-3, min_lr_ratio = 0.1, weight_decay = 0.1, clip = 1.0, init_std = 0.02;
  std::vector<double> loop_weights;   // one per loop; default t/T ramp, normalised to sum 1
  double gate_loss_weight = 0.1;
  int64_t eval_every = 200, eval_windows = 16, ckpt_every = 200;
  uint64_t seed = 0;
  bool resume = false;
  std::string init_from;              // start from this model directory's weights (a second stage)
  int64_t stop_after = 0;             // > 0: checkpoint and stop after this many steps (train in slices)
  std::string device = "cpu";
  std::string save_dtype = "F32";
};

// Runs (or resumes) training and writes an HF-style model directory to out_dir:
// config.json, model.safetensors, tokenizer.json, train_log.csv, training.json. The model files
// hold the best model by the last loop's valid CE (evaluated every eval_every steps and at the end).
// Checkpoints go to out_dir/checkpoint/ and are written atomically.
void run_training(const TrainOptions& options);

}  // namespace loopq::train
