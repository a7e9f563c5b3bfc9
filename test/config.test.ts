import assert from 'node:assert/strict';
import { test } from 'node:test';
import { ConfigError, defaultConfig, defaultConfigYaml, parseConfig } from '../shared/config.js';
import { defaultDataDir } from '../electron/engine/cli/data-dir.js';

test('the documented default YAML parses to exactly the built-in defaults', () => {
  assert.deepEqual(parseConfig(defaultConfigYaml(), 'default.yaml'), defaultConfig());
});

test('defaults follow the mitigation: thresholds 0.7 / 0.4, 100 trees of 256 samples', () => {
  const c = defaultConfig().embedding_anomaly_detection;
  assert.equal(c.thresholds.block, 0.7);
  assert.equal(c.thresholds.review, 0.4);
  assert.equal(c.detection_methods.isolation_forest.n_estimators, 100);
  assert.equal(c.detection_methods.isolation_forest.max_samples, 256);
  assert.equal(c.embedding_model.device, 'auto');
});

test('the mitigation example config is accepted as written', () => {
  const yaml = `
embedding_anomaly_detection:
  enabled: true
  embedding_model:
    name: 'mobilenet_v2'
    device: 'cuda'
    batch_size: 16
  detection_methods:
    isolation_forest:
      enabled: true
      contamination: 0.1
      n_estimators: 100
    autoencoder:
      enabled: true
      latent_dim: 128
      training_epochs: 50
  thresholds:
    block: 0.7
    review: 0.4
  baseline:
    update_frequency_hours: 24
    min_samples: 1000
    max_age_days: 30
  performance:
    timeout_seconds: 5
    cache_embeddings: true
    cache_ttl_seconds: 3600
`;
  const c = parseConfig(yaml, 'mitigation.yaml').embedding_anomaly_detection;
  assert.equal(c.embedding_model.batch_size, 16);
  assert.equal(c.detection_methods.autoencoder.latent_dim, 128);
  assert.equal(c.detection_methods.knn.k, 5, 'unspecified methods keep their defaults');
});

test('a wrong key or value is named by its dotted path', () => {
  const bad = `
embedding_anomaly_detection:
  embedding_model: { device: tpu }
  thresholds: { block: 0.3, review: 0.5 }
  detection_methods:
    knn: { k: 0, neighbours: 3 }
  colour: blue
`;
  assert.throws(
    () => parseConfig(bad, 'bad.yaml'),
    (err: unknown) => {
      assert.ok(err instanceof ConfigError);
      const m = err.message;
      assert.match(m, /^bad\.yaml: invalid configuration/);
      assert.match(m, /'embedding_anomaly_detection\.embedding_model\.device'/);
      assert.match(m, /'embedding_anomaly_detection\.detection_methods\.knn\.k'/);
      assert.match(m, /unknown key 'embedding_anomaly_detection\.detection_methods\.knn\.neighbours'/);
      assert.match(m, /unknown key 'embedding_anomaly_detection\.colour'/);
      assert.match(m, /review threshold must not exceed block threshold/);
      return true;
    },
  );
});

test('broken YAML is reported as such, with the file name', () => {
  assert.throws(() => parseConfig('a: [1, 2', 'broken.yaml'), /broken\.yaml: not valid YAML/);
});

test('data folder: PARALLAX_HOME wins, else the per-user app data folder of each OS', () => {
  assert.equal(defaultDataDir({ PARALLAX_HOME: '/srv/px' }, 'linux'), '/srv/px');
  assert.match(defaultDataDir({ XDG_CONFIG_HOME: '/home/u/.config' }, 'linux'), /^\/home\/u\/\.config\/Parallax$/);
  assert.match(defaultDataDir({}, 'darwin'), /Library\/Application Support\/Parallax$/);
  assert.match(defaultDataDir({ APPDATA: 'C:\\Users\\u\\AppData\\Roaming' }, 'win32'), /Parallax$/);
});

test('attack-aware signals, fusion and tiers: documented defaults, validated like the rest', () => {
  const c = defaultConfig().embedding_anomaly_detection;
  assert.deepEqual(c.detection_methods.lid, { enabled: true, weight: 1, k: 20 });
  assert.deepEqual(c.detection_methods.transformation_consistency, {
    mode: 'always', weight: 2, squeezers: ['median', 'jpeg', 'resize', 'occlusion'], bit_depth: 5, median_size: 2, jpeg_quality: 75, resize_factor: 0.75, occlusion_grid: 3, k: 20,
  });
  assert.deepEqual(c.detection_methods.cross_encoder, { mode: 'always', weight: 0.5, model: 'inception_v3', k: 10 });
  assert.deepEqual(c.detection_methods.cross_regression, { mode: 'always', weight: 1.5, ridge: 0.03 });
  assert.deepEqual(c.detection_methods.squeeze_cross, { mode: 'always', weight: 2, statistic: 'residual' });
  assert.deepEqual(c.fusion, { method: 'omnibus' });
  assert.deepEqual(c.tiering, { inconclusive_low: 0.1, inconclusive_high: 0.7 });
  const ok = parseConfig(`
embedding_anomaly_detection:
  detection_methods:
    transformation_consistency: { mode: when_inconclusive, squeezers: [bit_depth, jpeg] }
    cross_encoder: { mode: 'off' }
  fusion: { method: fisher }
  tiering: { inconclusive_low: 0, inconclusive_high: 0.7 }
`, 'tiers.yaml').embedding_anomaly_detection;
  assert.equal(ok.detection_methods.transformation_consistency.mode, 'when_inconclusive');
  assert.deepEqual(ok.detection_methods.transformation_consistency.squeezers, ['bit_depth', 'jpeg']);
  assert.equal(ok.detection_methods.cross_encoder.mode, 'off');
  assert.equal(ok.fusion.method, 'fisher');
  const bad = `
embedding_anomaly_detection:
  detection_methods:
    transformation_consistency: { mode: sometimes, squeezers: [median, median], resize_factor: 1, occlusion_grid: 1 }
    cross_encoder: { model: resnet }
    cross_regression: { ridge: 0, mode: sometimes }
    squeeze_cross: { weight: -1, mode: never, ridge: 1, statistic: angle }
  fusion: { method: mean }
  tiering: { inconclusive_low: 0.8, inconclusive_high: 0.2 }
`;
  assert.throws(
    () => parseConfig(bad, 'bad-tiers.yaml'),
    (err: unknown) => {
      assert.ok(err instanceof ConfigError);
      const m = err.message;
      assert.match(m, /'embedding_anomaly_detection\.detection_methods\.transformation_consistency\.mode'/);
      assert.match(m, /'embedding_anomaly_detection\.detection_methods\.transformation_consistency\.squeezers': each squeezer at most once/);
      assert.match(m, /'embedding_anomaly_detection\.detection_methods\.transformation_consistency\.resize_factor'/);
      assert.match(m, /'embedding_anomaly_detection\.detection_methods\.transformation_consistency\.occlusion_grid'/);
      assert.match(m, /'embedding_anomaly_detection\.detection_methods\.cross_encoder\.model'/);
      assert.match(m, /'embedding_anomaly_detection\.detection_methods\.cross_regression\.ridge'/);
      assert.match(m, /'embedding_anomaly_detection\.detection_methods\.cross_regression\.mode'/);
      assert.match(m, /'embedding_anomaly_detection\.detection_methods\.squeeze_cross\.weight'/);
      assert.match(m, /'embedding_anomaly_detection\.detection_methods\.squeeze_cross\.mode'/);
      assert.match(m, /unknown key 'embedding_anomaly_detection\.detection_methods\.squeeze_cross\.ridge'/);
      assert.match(m, /'embedding_anomaly_detection\.detection_methods\.squeeze_cross\.statistic'/);
      assert.match(m, /'embedding_anomaly_detection\.fusion\.method'/);
      assert.match(m, /inconclusive_low must not exceed inconclusive_high/);
      return true;
    },
  );
});
