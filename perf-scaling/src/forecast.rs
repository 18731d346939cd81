//! Predictive scaling: learn a metric's repeating shape (daily, weekly) from
//! its history and ask for the replicas the load will need `lead_time`
//! ahead, the instances' start-up time, so they are ready when it comes.
//!
//! The forecast only ever adds: the count the autoscaler works with is
//! `max(reactive, predicted)`, so a wrong forecast never leaves fewer
//! replicas than the load needs now, and a scale-in always needs the
//! reactive proposal to agree (as AWS's predictive scaling). A load without
//! a repeating pattern (a ramp, a flash crowd) leaves the forecast inactive
//! and the autoscaler purely reactive.
//!
//! The default model, chosen by measurement (the table is in
//! `docs/scaling.md`; `cargo test -p perf-scaling --release --test
//! predictive -- --nocapture --include-ignored` prints it): Holt-Winters
//! with additive seasonality had the lowest error 4 minutes ahead on the
//! diurnal week (42.5 req/s against 46.6 for a seasonal median scaled to the
//! current level and 124.4 for seasonal-naive) and the least
//! under-provisioning in simulation, for the same replica-seconds as the
//! seasonal median (seasonal-naive paid 6 % more, copying the one-off spike
//! into the next day).

use serde::{Deserialize, Serialize};

use crate::{Error, Result};

/// The latest clock value a demand history accepts (year 5138 in Unix
/// seconds); samples outside 0 to this are dropped.
pub const MAX_CLOCK_S: f64 = 1e11;

/// A sample this many buckets before the last one means the clock went
/// back: the history starts again.
const CLOCK_STEP_BACK_BUCKETS: f64 = 60.0;
/// Buckets in a day.
const DAY_BUCKETS: usize = 1440;

/// Seconds per bucket of the demand history.
pub const DEMAND_BUCKET_S: f64 = 60.0;
/// The most buckets kept (15 days of minutes); older ones are dropped.
pub const MAX_DEMAND_BUCKETS: usize = 21_600;
/// Periods tried when none is configured: a day and a week.
const CANDIDATE_PERIODS_S: [f64; 2] = [86_400.0, 604_800.0];
/// The weakest autocorrelation at the period that counts as repeating.
const MIN_AUTOCORRELATION: f64 = 0.6;
/// Minutes compared to scale the seasonal value to the current level.
const LEVEL_WINDOW: usize = 60;
/// Periods the seasonal median looks back over.
const SEASONS: usize = 3;

/// Whether the forecast acts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "snake_case")]
pub enum PredictiveMode {
    /// Forecast and record what it would have done; scale reactively.
    ForecastOnly,
    /// Scale to `max(reactive, predicted)`.
    Scale,
}

/// How the forecast is made (the default was chosen by measurement).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "snake_case")]
pub enum ForecastModel {
    /// Holt-Winters with additive seasonality (alpha 0.2, beta 0.01,
    /// gamma 0.2), kept up to date minute by minute.
    #[default]
    HoltWinters,
    /// The median of the same minute over the last 3 periods, scaled by the
    /// last hour's level against theirs.
    SeasonalMedian,
    /// The same minute one period ago.
    SeasonalNaive,
}

/// The `predictive` block of a [`crate::ScalingPolicy`].
///
/// ```
/// let p: perf_scaling::PredictiveSettings = serde_json::from_str(
///     r#"{"mode": "scale", "lead_time": "4m", "min_history": "1d", "max_boost": 2}"#)?;
/// assert_eq!(p.lead_time.as_duration().as_secs(), 240);
/// # Ok::<(), serde_json::Error>(())
/// ```
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
#[non_exhaustive]
pub struct PredictiveSettings {
    /// `forecast_only` (record, do not act) or `scale`.
    pub mode: PredictiveMode,
    /// How far ahead to provision: the instances' start-up time plus a
    /// decision period (1 s to 1 h).
    pub lead_time: perf_core::HumanDuration,
    /// History needed before the forecast acts (1 h to 15 d; at least one
    /// period). Default 1 day.
    #[serde(default = "default_min_history")]
    pub min_history: perf_core::HumanDuration,
    /// The forecast may ask for at most `max_boost` times the reactive
    /// count (1 to 100; default 2).
    #[serde(default = "default_max_boost")]
    pub max_boost: f64,
    /// The repeating period (1 h to 7 d); detected when absent (a day or a
    /// week, by autocorrelation).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub period: Option<perf_core::HumanDuration>,
    /// The metric forecast (default: the first one with a per-replica
    /// target: utilization or average value).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub metric: Option<String>,
    /// The model.
    #[serde(default)]
    pub model: ForecastModel,
}

fn default_min_history() -> perf_core::HumanDuration {
    std::time::Duration::from_secs(86_400).into()
}

fn default_max_boost() -> f64 {
    2.0
}

impl PredictiveSettings {
    /// Predictive scaling that acts, with these settings' defaults.
    pub fn scale(lead_time_s: f64) -> Self {
        Self {
            mode: PredictiveMode::Scale,
            lead_time: perf_core::saturating_secs(lead_time_s).into(),
            min_history: default_min_history(),
            max_boost: default_max_boost(),
            period: None,
            metric: None,
            model: ForecastModel::default(),
        }
    }

    /// Checks every field, naming it under `predictive.`.
    pub fn validate(&self) -> Result<()> {
        let secs = |d: perf_core::HumanDuration| d.as_duration().as_secs_f64();
        let lead = secs(self.lead_time);
        if !(1.0..=3600.0).contains(&lead) {
            return Err(Error::invalid(
                "predictive.lead_time",
                format!("{} is outside 1s to 1h", self.lead_time),
            ));
        }
        let history = secs(self.min_history);
        if !(3600.0..=15.0 * 86_400.0).contains(&history) {
            return Err(Error::invalid(
                "predictive.min_history",
                format!("{} is outside 1h to 15d", self.min_history),
            ));
        }
        if !(self.max_boost.is_finite() && (1.0..=100.0).contains(&self.max_boost)) {
            return Err(Error::invalid(
                "predictive.max_boost",
                format!("{} must be a number from 1 to 100", self.max_boost),
            ));
        }
        if let Some(period) = self.period {
            let p = secs(period);
            if !(3600.0..=7.0 * 86_400.0).contains(&p) {
                return Err(Error::invalid(
                    "predictive.period",
                    format!("{period} is outside 1h to 7d"),
                ));
            }
            if history < p {
                return Err(Error::invalid(
                    "predictive.min_history",
                    format!("{} is shorter than the period {period}", self.min_history),
                ));
            }
        }
        Ok(())
    }
}

/// The demand a metric measured, averaged per minute; gaps are filled with
/// the last value.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(default, deny_unknown_fields)]
pub struct DemandHistory {
    /// Which metric this is (name/kind/target type); a history of another
    /// metric is dropped when restored.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub metric: Option<String>,
    /// Start of the first bucket (the engine's clock, seconds).
    pub start_s: f64,
    /// Mean demand per bucket, oldest first.
    pub buckets: Vec<f64>,
    /// Samples averaged into the last bucket.
    pub last_count: u32,
}

impl DemandHistory {
    /// Adds a sample at `t_s` (a sample older than the last bucket is
    /// dropped; a gap is filled with the last value).
    pub fn record(&mut self, t_s: f64, value: f64) {
        if !(0.0..=MAX_CLOCK_S).contains(&t_s) || !value.is_finite() || value < 0.0 {
            return;
        }
        if self.buckets.is_empty() {
            self.start_s = (t_s / DEMAND_BUCKET_S).floor() * DEMAND_BUCKET_S;
            self.buckets.push(value);
            self.last_count = 1;
            return;
        }
        let index = ((t_s - self.start_s) / DEMAND_BUCKET_S).floor();
        let last = self.buckets.len() - 1;
        if index < last as f64 - CLOCK_STEP_BACK_BUCKETS {
            // The clock went back by more than an hour (or the history came
            // from elsewhere): start again rather than drop every sample.
            let metric = self.metric.take();
            *self = Self {
                metric,
                ..Self::default()
            };
            self.record(t_s, value);
            return;
        }
        if index < last as f64 {
            return;
        }
        if perf_core::num::saturating_usize(index) == last {
            // A running mean that cannot overflow.
            let n = f64::from(self.last_count);
            let b = self.buckets[last];
            self.buckets[last] = b + (value - b) / (n + 1.0);
            self.last_count = self.last_count.saturating_add(1);
            return;
        }
        // A gap longer than everything kept restarts the history.
        let gap = perf_core::num::saturating_usize(index).saturating_sub(last);
        if gap > MAX_DEMAND_BUCKETS {
            let metric = self.metric.take();
            *self = Self {
                metric,
                ..Self::default()
            };
            self.record(t_s, value);
            return;
        }
        // A short gap takes the last value; a long one (the process was
        // down) the same minute a day earlier when known, so a restart
        // does not flatten the daily shape.
        let fill = self.buckets[last];
        for _ in 1..gap {
            let i = self.buckets.len();
            let v = if gap > 60 && i >= DAY_BUCKETS {
                self.buckets[i - DAY_BUCKETS]
            } else {
                fill
            };
            self.buckets.push(v);
        }
        self.buckets.push(value);
        self.last_count = 1;
        if self.buckets.len() > MAX_DEMAND_BUCKETS {
            let drop = self.buckets.len() - MAX_DEMAND_BUCKETS;
            self.buckets.drain(..drop);
            self.start_s += drop as f64 * DEMAND_BUCKET_S;
        }
    }

    /// The bucket after the last one, counted from the clock's zero.
    fn end_bucket(&self) -> usize {
        perf_core::num::saturating_usize((self.start_s / DEMAND_BUCKET_S).max(0.0).round())
            .saturating_add(self.buckets.len())
    }

    /// Seconds of history held.
    pub fn span_s(&self) -> f64 {
        self.buckets.len() as f64 * DEMAND_BUCKET_S
    }

    pub(crate) fn check(&self) -> Result<()> {
        if self.buckets.len() > MAX_DEMAND_BUCKETS {
            return Err(Error::invalid(
                "history.demand.buckets",
                format!(
                    "{} buckets; at most {MAX_DEMAND_BUCKETS} are kept",
                    self.buckets.len()
                ),
            ));
        }
        if !(0.0..=MAX_CLOCK_S).contains(&self.start_s) {
            return Err(Error::invalid(
                "history.demand.start_s",
                format!("{} is outside 0 to {MAX_CLOCK_S} seconds", self.start_s),
            ));
        }
        if self.buckets.iter().any(|b| !b.is_finite() || *b < 0.0) {
            return Err(Error::invalid(
                "history.demand.buckets",
                "values must be finite and at least 0",
            ));
        }
        Ok(())
    }
}

/// The Pearson autocorrelation of `y` at `lag` (over the overlap).
fn autocorrelation(y: &[f64], lag: usize) -> f64 {
    if lag == 0 || y.len() <= lag + 1 {
        return 0.0;
    }
    let (a, b) = (&y[lag..], &y[..y.len() - lag]);
    let n = a.len() as f64;
    let (ma, mb) = (a.iter().sum::<f64>() / n, b.iter().sum::<f64>() / n);
    let (mut cov, mut va, mut vb) = (0.0, 0.0, 0.0);
    for (x, z) in a.iter().zip(b) {
        cov += (x - ma) * (z - mb);
        va += (x - ma).powi(2);
        vb += (z - mb).powi(2);
    }
    if va <= 0.0 || vb <= 0.0 {
        0.0
    } else {
        cov / (va * vb).sqrt()
    }
}

/// The repeating period in buckets: the configured one, or the candidate
/// (a week, then a day) with at least a quarter period of overlap and the
/// strongest autocorrelation above [`MIN_AUTOCORRELATION`].
pub(crate) fn detect_period(history: &DemandHistory, configured_s: Option<f64>) -> Option<usize> {
    let y = &history.buckets;
    if let Some(p) = configured_s {
        let lag = perf_core::num::saturating_usize((p / DEMAND_BUCKET_S).round());
        return (y.len() >= lag).then_some(lag);
    }
    CANDIDATE_PERIODS_S
        .iter()
        .map(|p| perf_core::num::saturating_usize((p / DEMAND_BUCKET_S).round()))
        .filter(|lag| y.len() >= lag + lag / 4)
        .map(|lag| (lag, autocorrelation(y, lag)))
        .filter(|(_, r)| *r >= MIN_AUTOCORRELATION)
        .max_by(|a, b| a.1.total_cmp(&b.1))
        .map(|(lag, _)| lag)
}

/// The seasonal value at absolute bucket `i` (may be in the future): the
/// median of `i - k·period` over the last [`SEASONS`] periods known.
fn seasonal(y: &[f64], i: usize, period: usize) -> Option<f64> {
    let mut values: Vec<f64> = (1..=SEASONS)
        .filter_map(|k| i.checked_sub(k * period))
        .filter(|j| *j < y.len())
        .map(|j| y[j])
        .collect();
    (!values.is_empty()).then(|| perf_core::median(&mut values))
}

/// Forecasts the demand for the next `horizon` buckets. `cache` keeps the
/// Holt-Winters state between calls (advanced bucket by bucket).
pub(crate) fn forecast(
    history: &DemandHistory,
    model: ForecastModel,
    period: usize,
    horizon: usize,
    cache: &mut Option<HoltWinters>,
) -> Vec<f64> {
    let y = &history.buckets;
    let n = y.len();
    if n < period || period == 0 {
        return Vec::new();
    }
    match model {
        ForecastModel::SeasonalNaive => (n..n + horizon)
            .map(|i| y[i - period * (1 + (i - n) / period)])
            .collect(),
        ForecastModel::SeasonalMedian => {
            let window = LEVEL_WINDOW.min(n);
            let (mut now, mut then) = (0.0, 0.0);
            for i in n - window..n {
                if let Some(s) = seasonal(y, i, period) {
                    now += y[i];
                    then += s;
                }
            }
            let level = if then > 0.0 {
                (now / then).clamp(0.25, 4.0)
            } else {
                1.0
            };
            (n..n + horizon)
                .map(|i| seasonal(y, i, period).unwrap_or(y[n - 1]) * level)
                .collect()
        }
        ForecastModel::HoltWinters => HoltWinters::forecast(history, period, horizon, cache),
    }
}

/// Holt-Winters with additive seasonality over the completed buckets,
/// kept between forecasts and advanced as buckets complete.
#[derive(Debug, Clone)]
pub(crate) struct HoltWinters {
    period: usize,
    /// The absolute bucket after the last one folded in.
    upto: usize,
    level: f64,
    trend: f64,
    season: Vec<f64>,
}

impl HoltWinters {
    const ALPHA: f64 = 0.2;
    const BETA: f64 = 0.01;
    const GAMMA: f64 = 0.2;

    /// Starts from the first period, whose first bucket is absolute bucket
    /// `from` (seasons are indexed by absolute bucket modulo the period).
    fn start(first: &[f64], from: usize) -> Self {
        let period = first.len();
        let level = first.iter().sum::<f64>() / period as f64;
        let mut season = vec![0.0; period];
        for (j, v) in first.iter().enumerate() {
            season[(from + j) % period] = v - level;
        }
        Self {
            period,
            upto: from + period,
            level,
            trend: 0.0,
            season,
        }
    }

    fn advance(&mut self, v: f64) {
        let i = self.upto % self.period;
        let s = self.season[i];
        let last_level = self.level;
        self.level = Self::ALPHA * (v - s) + (1.0 - Self::ALPHA) * (self.level + self.trend);
        self.trend = Self::BETA * (self.level - last_level) + (1.0 - Self::BETA) * self.trend;
        self.season[i] = Self::GAMMA * (v - self.level) + (1.0 - Self::GAMMA) * s;
        self.upto += 1;
    }

    fn forecast(
        history: &DemandHistory,
        period: usize,
        horizon: usize,
        cache: &mut Option<Self>,
    ) -> Vec<f64> {
        let y = &history.buckets;
        let first_abs = history.end_bucket() - y.len();
        // Fold in the completed buckets (all but the last, still filling).
        let completed_end = history.end_bucket() - 1;
        let usable = cache.as_ref().is_some_and(|c| {
            c.period == period && c.upto <= completed_end && c.upto >= first_abs + period
        });
        if !usable {
            if y.len() <= period {
                return Vec::new();
            }
            *cache = Some(Self::start(&y[..period], first_abs));
        }
        let Some(state) = cache.as_mut() else {
            return Vec::new();
        };
        while state.upto < completed_end {
            state.advance(y[state.upto - first_abs]);
        }
        if !(state.level.is_finite() && state.trend.is_finite()) {
            *cache = None;
            return Vec::new();
        }
        let mut now = state.clone();
        now.advance(y[y.len() - 1]);
        (0..horizon)
            .map(|h| {
                let i = (now.upto + h) % period;
                (now.level + (h + 1) as f64 * now.trend + now.season[i]).max(0.0)
            })
            .collect()
    }
}

/// A forecast point.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ForecastPoint {
    /// Seconds from now.
    pub in_s: f64,
    /// The demand forecast.
    pub load: f64,
    /// Replicas that demand needs at the target.
    pub replicas: u32,
}

/// What the forecaster knows and expects.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ForecastStatus {
    /// The configured mode.
    pub mode: PredictiveMode,
    /// The model.
    pub model: ForecastModel,
    /// Whether forecasts are being made (enough history, a period found).
    pub forecasting: bool,
    /// Whether they change decisions (`forecasting` and mode `scale`).
    pub active: bool,
    /// Why not, when not.
    pub reason: Option<String>,
    /// Seconds of demand history held.
    pub history_s: f64,
    /// The period in use, seconds.
    pub period_s: Option<f64>,
    /// The next hour, every 5 minutes.
    pub next_hour: Vec<ForecastPoint>,
}

/// What the forecast asked for in one decision.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Prediction {
    /// The most demand forecast within the lead time.
    pub load: f64,
    /// Replicas for it, capped by `max_boost` times the reactive count.
    pub replicas: u32,
    /// What the metrics alone asked for.
    pub reactive: u32,
    /// Whether it changed the proposal (mode `scale` and above reactive).
    pub applied: bool,
}

/// The state a predictive autoscaler keeps: its settings, the per-replica
/// capacity of the forecast metric, and the demand history.
#[derive(Debug, Clone)]
pub(crate) struct Forecaster {
    pub(crate) settings: PredictiveSettings,
    pub(crate) history: DemandHistory,
    pub(crate) period_cache: PeriodCache,
    pub(crate) model_cache: std::cell::RefCell<Option<HoltWinters>>,
}

/// Buckets of new history after which the period is looked for again.
const REDETECT_EVERY: usize = 60;

/// The period found, and the history length when it was looked for: it is
/// looked for again after [`REDETECT_EVERY`] buckets more of history.
#[derive(Debug, Clone, Default)]
pub(crate) struct PeriodCache(std::cell::Cell<Option<(usize, Option<usize>)>>);

impl PeriodCache {
    /// The period of `history` in buckets ([`detect_period`]), found again
    /// only when enough history has come since the last search.
    fn period(&self, history: &DemandHistory, configured_s: Option<f64>) -> Option<usize> {
        let end = history.end_bucket();
        match self.0.get() {
            Some((at, found)) if end >= at && end - at < REDETECT_EVERY => found,
            _ => {
                let found = detect_period(history, configured_s);
                self.0.set(Some((end, found)));
                found
            }
        }
    }

    /// Forgets the period found (the history was replaced).
    pub(crate) fn clear(&self) {
        self.0.set(None);
    }
}

impl Forecaster {
    pub(crate) fn new(settings: PredictiveSettings) -> Self {
        Self {
            settings,
            history: DemandHistory::default(),
            period_cache: PeriodCache::default(),
            model_cache: std::cell::RefCell::new(None),
        }
    }

    fn period(&self) -> std::result::Result<usize, String> {
        let min = self.settings.min_history.as_duration().as_secs_f64();
        if self.history.span_s() < min {
            return Err(format!(
                "learning: {:.1} h of history, {:.1} h needed (min_history)",
                self.history.span_s() / 3600.0,
                min / 3600.0
            ));
        }
        let configured = self.settings.period.map(|p| p.as_duration().as_secs_f64());
        self.period_cache
            .period(&self.history, configured)
            .ok_or_else(|| "no repeating daily or weekly pattern in the history".to_owned())
    }

    /// The forecast for the next `horizon_s`, one value per bucket.
    pub(crate) fn ahead(&self, horizon_s: f64) -> std::result::Result<(usize, Vec<f64>), String> {
        let period = self.period()?;
        let horizon =
            perf_core::num::saturating_usize((horizon_s / DEMAND_BUCKET_S).ceil().max(1.0));
        let values = forecast(
            &self.history,
            self.settings.model,
            period,
            horizon,
            &mut self.model_cache.borrow_mut(),
        );
        if values.is_empty() {
            return Err("not enough history for one period".to_owned());
        }
        Ok((period, values))
    }

    /// The status with the next hour's forecast; `capacity` is the demand
    /// one replica takes at the target.
    pub(crate) fn status(&self, capacity: Option<f64>) -> ForecastStatus {
        let mode = self.settings.mode;
        let mut status = ForecastStatus {
            mode,
            model: self.settings.model,
            forecasting: false,
            active: false,
            reason: None,
            history_s: self.history.span_s(),
            period_s: None,
            next_hour: Vec::new(),
        };
        match self.ahead(3600.0) {
            Ok((period, values)) => {
                status.forecasting = true;
                status.active = mode == PredictiveMode::Scale;
                status.period_s = Some(period as f64 * DEMAND_BUCKET_S);
                status.next_hour = values
                    .iter()
                    .enumerate()
                    .filter(|(i, _)| (i + 1) % 5 == 0)
                    .map(|(i, load)| ForecastPoint {
                        in_s: (i + 1) as f64 * DEMAND_BUCKET_S,
                        load: *load,
                        replicas: capacity.map_or(0, |c| crate::replicas::ceil_replicas(load / c)),
                    })
                    .collect();
            }
            Err(why) => status.reason = Some(why),
        }
        status
    }
}

/// Mean absolute error of a model's forecast `lead_s` ahead over a trace of
/// (seconds, demand) points, scored after `warmup_s` (the model learns as
/// it goes, as it would live). For choosing a model by measurement.
///
/// ```
/// use perf_scaling::{backtest_forecast, ForecastModel};
/// // Two days of a pure daily sine, then a third: every model learns it.
/// let trace: Vec<(f64, f64)> = (0..3 * 24 * 60)
///     .map(|m| (m as f64 * 60.0, 100.0 + 50.0 * (m as f64 / 1440.0 * std::f64::consts::TAU).sin()))
///     .collect();
/// let mae = backtest_forecast(&trace, ForecastModel::SeasonalNaive, 300.0, 86_400.0, Some(86_400.0));
/// assert!(mae.unwrap() < 1.0);
/// ```
pub fn backtest_forecast(
    trace: &[(f64, f64)],
    model: ForecastModel,
    lead_s: f64,
    warmup_s: f64,
    period_s: Option<f64>,
) -> Option<f64> {
    let &(start, _) = trace.first()?;
    let mut history = DemandHistory::default();
    let lead = perf_core::num::saturating_usize((lead_s / DEMAND_BUCKET_S).ceil().max(1.0));
    let mut pending: Vec<(f64, f64)> = Vec::new();
    let (mut error, mut count) = (0.0, 0usize);
    let mut next = 0usize;
    let periods = PeriodCache::default();
    let mut model_cache = None;
    // Minute by minute, step-interpolating the trace.
    let end = trace[trace.len() - 1].0;
    let minutes = (end - start) / DEMAND_BUCKET_S;
    if !(minutes.is_finite() && minutes <= 10.0 * MAX_DEMAND_BUCKETS as f64) || start < 0.0 {
        return None;
    }
    let mut minute = 0u64;
    let mut t = start;
    while t <= end {
        while next + 1 < trace.len() && trace[next + 1].0 <= t {
            next += 1;
        }
        let value = trace[next].1;
        pending.retain(|(at, predicted)| {
            if (*at - t).abs() < DEMAND_BUCKET_S / 2.0 {
                error += (predicted - value).abs();
                count += 1;
                false
            } else {
                *at > t
            }
        });
        history.record(t, value);
        let period = periods.period(&history, period_s);
        if t - start >= warmup_s
            && let Some(period) = period
        {
            let values = forecast(&history, model, period, lead, &mut model_cache);
            if let Some(v) = values.last() {
                pending.push((t + lead as f64 * DEMAND_BUCKET_S, *v));
            }
        }
        minute += 1;
        t = start + minute as f64 * DEMAND_BUCKET_S;
    }
    (count > 0).then(|| error / count as f64)
}

perf_core::config_builder! {
    /// Builds [`PredictiveSettings`] from the mode and the lead time.
    ///
    /// ```
    /// use std::time::Duration;
    /// use perf_scaling::{PredictiveMode, PredictiveSettings};
    /// let settings = PredictiveSettings::builder(PredictiveMode::Scale, Duration::from_secs(300))
    ///     .max_boost(3.0)
    ///     .build()?;
    /// assert_eq!(settings.max_boost, 3.0);
    /// assert!(PredictiveSettings::builder(PredictiveMode::Scale, Duration::ZERO).build().is_err());
    /// # Ok::<(), perf_scaling::Error>(())
    /// ```
    PredictiveSettings(mode: PredictiveMode, lead_time: impl Into<perf_core::HumanDuration>)
        => PredictiveSettingsBuilder, Error {
        min_history: perf_core::HumanDuration => into,
        max_boost: f64,
        period: Option<perf_core::HumanDuration> => into,
        metric: Option<String> => into,
        model: ForecastModel,
    }
    starting from PredictiveSettings {
        mode,
        lead_time: lead_time.into(),
        ..PredictiveSettings::scale(60.0)
    }
}
