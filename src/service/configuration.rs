//! The configuration aggregate: categories, rooms, add-ins, groups and the compliance
//! configuration. Every write reads what its rules need inside its own write transaction.

use std::collections::HashMap;

use serde_json::Value;

use super::access::{self, Source};
use super::compliance::refuse_if_held;
use super::object;
use super::{
    Caller, Object, Result, Service, ServiceError, Stored, WriteAccess, decode, require_admin,
};
use crate::api::ErrorCode;
use crate::api::wire::{ChangeCounter, STATE_CLOSING, STATE_OPENING, StateLayout};
use crate::clock;
use crate::domain::RoomFilter;
use crate::domain::access::{ChangeRefusal, Viewer};
use crate::domain::compliance::HeldAct;
use crate::domain::{
    self, Category, ComplianceConfiguration, FieldProblem, Kind, Marks, Principal, Room,
    RoomChangeKind,
};
use crate::store::{ObjectRow, ObjectWrite, RoomReference, RoomScan, StoreError, Tx};

/// The version a write expects the object to be at (`If-Match`), if any.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Precondition {
    #[default]
    None,
    Version(i64),
    /// An entity tag that is no version of ours (opaque or weak): it matches nothing, so the
    /// write fails as any stale one does (RFC 9110, 13.1.1).
    Unmatchable,
}

/// How a write marks the object's ownership.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Ownership {
    /// Keep the object's current marks (unmanaged and unprotected when new).
    #[default]
    Keep,
    /// Mark the object as managed by the reconciler (creating or adopting it), and record
    /// whether its manifest protects it from removal.
    Managed { protect: bool },
    /// End the reconciler's management (`kind: Forget`): neither managed nor protected.
    Unmanaged,
}

impl Ownership {
    /// The marks after this write, given the current ones.
    fn marks(self, current: Marks) -> Marks {
        match self {
            Ownership::Keep => current,
            Ownership::Managed { protect } => Marks {
                managed: true,
                protect,
            },
            Ownership::Unmanaged => Marks {
                managed: false,
                protect: false,
            },
        }
    }
}

/// One write of a batch.
#[derive(Clone, Debug)]
pub enum Operation {
    Create {
        object: Object,
        ownership: Ownership,
    },
    Replace {
        name: String,
        object: Object,
        precondition: Precondition,
        ownership: Ownership,
    },
    Remove {
        kind: Kind,
        name: String,
        precondition: Precondition,
        force: bool,
    },
    SetCompliance {
        configuration: ComplianceConfiguration,
        precondition: Precondition,
        ownership: Ownership,
    },
}

/// Several writes in one transaction, each still all-or-nothing: a failed step is rolled back
/// to its savepoint and leaves the steps before it in place for [`Batch::commit`].
///
/// Large applies go through batches because a commit costs far more than a statement.
pub struct Batch<'a> {
    service: &'a Service,
    tx: Tx,
}

impl Batch<'_> {
    /// Carries out one operation.
    ///
    /// # Errors
    /// As the matching [`Service`] method; the operation then changed nothing.
    pub async fn run(&mut self, caller: &Caller, operation: Operation) -> Result<()> {
        self.tx.savepoint().await?;
        let service = self.service;
        let tx = &mut self.tx;
        let outcome = match operation {
            Operation::Create { object, ownership } => service
                .create_in(tx, caller, object, ownership)
                .await
                .map(drop),
            Operation::Replace {
                name,
                object,
                precondition,
                ownership,
            } => service
                .replace_in(tx, caller, &name, object, precondition, ownership)
                .await
                .map(drop),
            Operation::Remove {
                kind,
                name,
                precondition,
                force,
            } => {
                service
                    .remove_in(tx, caller, kind, &name, precondition, force)
                    .await
            }
            Operation::SetCompliance {
                configuration,
                precondition,
                ownership,
            } => service
                .set_compliance_in(tx, caller, configuration, precondition, ownership)
                .await
                .map(drop),
        };
        match outcome {
            Ok(()) => {
                self.tx.release_savepoint().await?;
                Ok(())
            }
            Err(error) => {
                self.tx.rollback_to_savepoint().await?;
                Err(error)
            }
        }
    }

    /// Creates objects in order, as [`Batch::run`] would one by one, and stops at the first
    /// that fails: `Err((done, error))` says how many were created before it.
    ///
    /// Rooms an administrator creates (the large apply that makes a pool's rooms) are judged
    /// one by one, by the rules [`Service::create`] applies, and then written together in a
    /// few multi-row statements: hundreds of rooms cost about what one did. A name found
    /// taken sends them all back through [`Batch::run`], which reports it as it always has.
    /// A database failure leaves none of them created.
    pub async fn create_all(
        &mut self,
        caller: &Caller,
        creations: Vec<(Object, Ownership)>,
    ) -> std::result::Result<(), (usize, ServiceError)> {
        let together = caller.is_admin()
            && creations.len() > 1
            && creations
                .iter()
                .all(|(object, _)| matches!(object, Object::Room(_)));
        if !together {
            return self.run_each(caller, creations).await;
        }
        self.tx
            .savepoint()
            .await
            .map_err(|error| (0, error.into()))?;
        let mut categories: HashMap<String, Category> = HashMap::new();
        let mut judged: Vec<(Object, Ownership)> = Vec::with_capacity(creations.len());
        let mut creations = creations.into_iter();
        let mut refusal = None;
        for (mut object, ownership) in creations.by_ref() {
            match judge_new_room_of_admin(
                &mut self.tx,
                caller,
                &mut object,
                ownership,
                &mut categories,
            )
            .await
            {
                Ok(()) => judged.push((object, ownership)),
                Err(error) => {
                    refusal = Some((object, ownership, error));
                    break;
                }
            }
        }
        let now = clock::now();
        let written = match write_rooms(&mut self.tx, caller, &judged, &now).await {
            Ok(written) => written,
            Err(error) => {
                let _ = self.tx.rollback_to_savepoint().await;
                return Err((0, error));
            }
        };
        if !written {
            // A name is taken: one by one, each is judged and reported as it always was.
            self.tx
                .rollback_to_savepoint()
                .await
                .map_err(|error| (0, error.into()))?;
            let rest = judged
                .into_iter()
                .chain(refusal.map(|(object, ownership, _)| (object, ownership)))
                .chain(creations)
                .collect();
            return self.run_each(caller, rest).await;
        }
        self.tx
            .release_savepoint()
            .await
            .map_err(|error| (0, error.into()))?;
        for (object, _) in &judged {
            tracing::info!(kind = %object.kind(), name = object.name(), by = %caller.name, "created");
        }
        match refusal {
            Some((_, _, error)) => Err((judged.len(), error)),
            None => Ok(()),
        }
    }

    async fn run_each(
        &mut self,
        caller: &Caller,
        creations: Vec<(Object, Ownership)>,
    ) -> std::result::Result<(), (usize, ServiceError)> {
        for (index, (object, ownership)) in creations.into_iter().enumerate() {
            self.run(caller, Operation::Create { object, ownership })
                .await
                .map_err(|error| (index, error))?;
        }
        Ok(())
    }

    /// Makes every successful operation durable.
    pub async fn commit(self) -> Result<()> {
        self.tx.commit().await?;
        self.service.notify_change();
        Ok(())
    }
}

/// The most rooms one page of [`Service::rooms_page`] reads: a filter that matches little on
/// a large server answers in bounded time, with a `next` to go on from.
pub const ROOM_SCAN_BUDGET: usize = 20_000;

/// A page of rooms and where the next one starts (`None`: this was the last).
#[derive(Debug)]
pub struct RoomPage {
    pub rooms: Vec<Stored<Object>>,
    pub next: Option<String>,
    /// How many rooms were read to make it.
    pub scanned: usize,
}

impl Service {
    /// Lists the objects of a kind that the caller may see, ordered by name.
    pub async fn list(&self, caller: &Caller, kind: Kind) -> Result<Vec<Stored<Object>>> {
        let objects = decode_all(&self.store.list(kind).await?)?;
        if caller.is_admin() {
            return Ok(objects);
        }
        let view = access::ListView::load(&self.store).await?;
        let addins_in_view: std::collections::BTreeSet<String> = if kind == Kind::Addin {
            decode_all(&self.store.list(Kind::Room).await?)?
                .into_iter()
                .filter_map(|room| match room.spec {
                    Object::Room(room) if view.room_rights(caller, &room).sees => room.addin,
                    _ => None,
                })
                .collect()
        } else {
            std::collections::BTreeSet::new()
        };
        Ok(objects
            .into_iter()
            .filter(|object| match &object.spec {
                Object::Group(_) => domain::access::sees_group(caller.viewer()),
                Object::Category(category) => view.sees_category(caller, category),
                Object::Room(room) => view.room_rights(caller, room).sees,
                Object::Addin(addin) => addins_in_view.contains(&addin.name),
            })
            .collect())
    }

    /// One page of the rooms the caller may see that match `filter`, in name order after
    /// `after`: the rooms page of the panel and the chat client's list, on servers of any size.
    ///
    /// Reads slices of rooms (narrowed in SQL where the filter allows) and judges each with
    /// the access rules and the filter, stopping at `limit` rooms or after reading
    /// [`ROOM_SCAN_BUDGET`] rows; either way `next` says where to go on.
    pub async fn rooms_page(
        &self,
        caller: &Caller,
        filter: &RoomFilter,
        after: Option<&str>,
        limit: usize,
    ) -> Result<RoomPage> {
        let limit = limit.clamp(1, 500);
        let view = if caller.is_admin() {
            None
        } else {
            Some(access::ListView::load(&self.store).await?)
        };
        // The stored names of the category and add-in asked for, which the indexed columns
        // hold: the filter ignores case and Unicode form, the columns do not.
        let mut stored_names = [None, None];
        for (slot, kind, wanted) in [
            (0, Kind::Category, &filter.category),
            (1, Kind::Addin, &filter.addin),
        ] {
            if let Some(wanted) = wanted {
                let key = crate::domain::name_key(wanted);
                let found = self
                    .store
                    .list(kind)
                    .await?
                    .into_iter()
                    .find(|row| crate::domain::name_key(&row.name) == key);
                match found {
                    Some(row) => stored_names[slot] = Some(row.name),
                    None => {
                        return Ok(RoomPage {
                            rooms: Vec::new(),
                            next: None,
                            scanned: 0,
                        });
                    }
                }
            }
        }
        let [category, addin] = stored_names;
        let mut body_contains = Vec::new();
        for principal in filter.member.iter().chain(&filter.manager) {
            // As the body writes it: JSON, by the writer that wrote the body.
            body_contains.push(
                serde_json::to_string(&principal.to_string()).map_err(ServiceError::internal)?,
            );
        }
        let mut body_contains_folded = Vec::new();
        if let Some(text) = &filter.text
            // Only where SQL's lower() and ours agree, and JSON writes the text as it is.
            && text.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, ' ' | '-' | '_' | '.'))
        {
            body_contains_folded.push(text.to_ascii_lowercase());
        }
        let mut rooms = Vec::new();
        let mut cursor = after.map(str::to_owned);
        let mut scanned = 0;
        // Without a condition to judge, a page is the next `limit` rooms; with one, read ahead.
        let slice = if filter.is_empty() && view.is_none() {
            limit + 1
        } else {
            (limit * 4).max(200)
        };
        loop {
            let rows = self
                .store
                .scan_rooms(&RoomScan {
                    after: cursor.as_deref(),
                    category: category.as_deref(),
                    addin: addin.as_deref(),
                    body_contains: body_contains.clone(),
                    body_contains_folded: body_contains_folded.clone(),
                    limit: i64::try_from(slice).unwrap_or(i64::MAX),
                })
                .await?;
            let exhausted = rows.len() < slice;
            for row in &rows {
                scanned += 1;
                cursor = Some(row.name.clone());
                let room = Stored::<Object>::from_row(row)?;
                let Object::Room(spec) = &room.spec else {
                    continue;
                };
                let sees = view
                    .as_ref()
                    .is_none_or(|view| view.room_rights(caller, spec).sees);
                if sees && filter.matches(spec) {
                    rooms.push(room);
                    if rooms.len() == limit {
                        // More may follow; the next page says so if not.
                        return Ok(RoomPage {
                            rooms,
                            next: cursor,
                            scanned,
                        });
                    }
                }
            }
            if exhausted {
                return Ok(RoomPage {
                    rooms,
                    next: None,
                    scanned,
                });
            }
            if scanned >= ROOM_SCAN_BUDGET {
                return Ok(RoomPage {
                    rooms,
                    next: cursor,
                    scanned,
                });
            }
        }
    }

    /// How many rooms the server holds (all of them, whoever asks: a count shows no room).
    pub async fn room_count(&self) -> Result<i64> {
        Ok(self.store.count_rooms().await?)
    }

    /// Reads one object the caller may see.
    ///
    /// # Errors
    /// [`ServiceError::NotFound`] when it does not exist or the caller may not see it.
    pub async fn get(&self, caller: &Caller, kind: Kind, name: &str) -> Result<Stored<Object>> {
        let row = self
            .store
            .get(kind, name)
            .await?
            .ok_or_else(|| ServiceError::not_found(kind, name))?;
        let object = Stored::<Object>::from_row(&row)?;
        if !access::sees(&mut Source::Pool(&self.store), caller, &object.spec).await? {
            return Err(ServiceError::not_found(kind, name));
        }
        Ok(object)
    }

    /// Every configuration object in one snapshot, as the JSON document of `GET /v1/state`:
    /// `{"formatVersion": 1, "objects": [...]}`, each object with its `kind` and bookkeeping.
    /// Administrators only.
    pub async fn state_json(&self, caller: &Caller) -> Result<String> {
        let pages = self.state_pages(caller).await?;
        let length = pages.iter().map(String::len).sum::<usize>() + 32;
        let mut json = String::with_capacity(length);
        json.push_str(STATE_OPENING);
        for (index, page) in pages.iter().enumerate() {
            if index > 0 {
                json.push(',');
            }
            json.push_str(page);
        }
        json.push_str(STATE_CLOSING);
        Ok(json)
    }

    /// The document of [`Service::state_json`] in parts, each sent as soon as the database
    /// wrote it, so that its first bytes leave before its last are read and it is never
    /// joined into one string. The caller's right and the first read are judged before this
    /// returns; a read that fails later ends the stream with the error (a cut document,
    /// never a whole-looking one). The read goes on at the database's pace whatever the
    /// client's (see [`crate::store::Store::state_json_pages_to`]); dropping the stream ends it.
    /// Each object is written in `layout`: as shown, or as a row.
    pub async fn state_json_stream(
        &self,
        caller: &Caller,
        layout: StateLayout,
    ) -> Result<StateJsonStream> {
        require_admin(caller, "read the whole configuration")?;
        let (sender, mut pages) = tokio::sync::mpsc::unbounded_channel();
        let (finished, end) = tokio::sync::oneshot::channel();
        let store = self.store.clone();
        tokio::spawn(async move {
            let read = match layout {
                StateLayout::Objects => store.state_json_pages_to(&sender).await,
                StateLayout::Rows => store.state_row_pages_to(&sender).await,
            };
            drop(sender);
            let _ = finished.send(read);
        });
        let mut end = Some(end);
        let first = pages.recv().await;
        if first.is_none() {
            // No page: an empty state, or a read that failed before its first page, which is
            // still an error of the request.
            read_end(end.take()).await?;
        }
        Ok(StateJsonStream {
            opening: layout.opening(),
            opened: false,
            first,
            after_comma: None,
            pages,
            closing_due: end.is_none(),
            end,
        })
    }

    /// Every configuration object in one snapshot, as pages of comma-separated JSON objects
    /// shaped as in [`Service::state_json`]; administrators only.
    pub async fn state_pages(&self, caller: &Caller) -> Result<Vec<String>> {
        require_admin(caller, "read the whole configuration")?;
        Ok(self.store.state_json_pages().await?)
    }

    /// The objects of [`Service::state_pages`] as rows, a page sent as soon as it is read
    /// (see [`crate::store::Store::state_row_pages_to`]), for the embedded target;
    /// administrators only.
    pub async fn state_row_pages_to(
        &self,
        caller: &Caller,
        pages: &tokio::sync::mpsc::UnboundedSender<String>,
    ) -> Result<()> {
        require_admin(caller, "read the whole configuration")?;
        Ok(self.store.state_row_pages_to(pages).await?)
    }

    /// Where the configuration stands (see [`ChangeCounter`]); administrators only, as the
    /// state it stands for.
    pub async fn change_counter(&self, caller: &Caller) -> Result<ChangeCounter> {
        require_admin(caller, "read the whole configuration")?;
        let (generation, objects, last_id) = self.store.change_counter().await?;
        Ok(ChangeCounter {
            generation,
            objects,
            last_id,
        })
    }

    /// Opens a batch of writes in one transaction.
    pub async fn batch(&self) -> Result<Batch<'_>> {
        Ok(Batch {
            service: self,
            tx: self.store.begin(WriteAccess::new()).await?,
        })
    }

    /// Creates an object.
    ///
    /// # Errors
    /// A field that breaks a rule, a name in use, a missing category or add-in, a principal
    /// outside the category's scope, or a caller without the right to create it.
    pub async fn create(
        &self,
        caller: &Caller,
        object: Object,
        ownership: Ownership,
    ) -> Result<Stored<Object>> {
        let mut tx = self.store.begin(WriteAccess::new()).await?;
        let outcome = self.create_in(&mut tx, caller, object, ownership).await?;
        tx.commit().await?;
        self.notify_change();
        Ok(outcome)
    }

    async fn create_in(
        &self,
        tx: &mut Tx,
        caller: &Caller,
        mut object: Object,
        ownership: Ownership,
    ) -> Result<Stored<Object>> {
        object.normalise();
        reject_problems(object.problems())?;
        match &mut object {
            Object::Group(group) => {
                require_admin(caller, "create groups")?;
                check_groups_exist(tx, "members", &group.members, Some(&group.name)).await?;
            }
            Object::Addin(_) => require_admin(caller, "create add-ins")?,
            Object::Category(category) => {
                require_admin(caller, "create categories")?;
                check_category_lists(tx, category, None).await?;
            }
            Object::Room(room) => {
                let category = load_category_for(tx, caller, &room.category).await?;
                check_new_room(tx, caller, room, &category).await?;
            }
        }
        check_marks(caller, ownership)?;
        let now = clock::now();
        let marks = ownership.marks(Marks::default());
        let write = write_of(&object, marks, &caller.name, &now)?;
        let written = tx.insert(write).await;
        let row = hide_duplicate(tx, caller, object.name(), written).await?;
        if row.kind == Kind::Room {
            announce(tx, &row, RoomChangeKind::Created, &now).await?;
        }
        tracing::info!(kind = %object.kind(), name = object.name(), by = %caller.name, "created");
        Stored::<Object>::from_row(&row)
    }
}

/// What [`Service::create_in`] checks of a room an administrator creates, with each category
/// read once for all the rooms of a [`Batch::create_all`].
async fn judge_new_room_of_admin(
    tx: &mut Tx,
    caller: &Caller,
    object: &mut Object,
    ownership: Ownership,
    categories: &mut HashMap<String, Category>,
) -> Result<()> {
    object.normalise();
    reject_problems(object.problems())?;
    let Object::Room(room) = object else {
        return Err(ServiceError::internal("only rooms are created together"));
    };
    if !categories.contains_key(&room.category) {
        // An administrator sees every category: `load_category_for` is `load_category`.
        let category = load_category(tx, &room.category).await?;
        categories.insert(room.category.clone(), category);
    }
    let category = &categories[&room.category];
    check_new_room(tx, caller, room, category).await?;
    check_marks(caller, ownership)
}

/// Stores rooms judged by [`judge_new_room_of_admin`] and announces them; `false` (with part
/// of them perhaps written, to roll back) when a name is taken.
async fn write_rooms(
    tx: &mut Tx,
    caller: &Caller,
    rooms: &[(Object, Ownership)],
    now: &str,
) -> Result<bool> {
    let writes = rooms
        .iter()
        .map(|(object, ownership)| {
            write_of(object, ownership.marks(Marks::default()), &caller.name, now)
        })
        .collect::<Result<Vec<_>>>()?;
    let Some(rows) = tx.insert_all(&writes).await? else {
        return Ok(false);
    };
    let created: Vec<(i64, &str)> = rows.iter().map(|row| (row.id, row.name.as_str())).collect();
    tx.insert_room_creations(&created, now).await?;
    Ok(true)
}

/// The rules a new room must meet in `category` (which the caller may see) before it is
/// stored; a creator who is not an administrator becomes one of its managers.
async fn check_new_room(
    tx: &mut Tx,
    caller: &Caller,
    room: &mut Room,
    category: &Category,
) -> Result<()> {
    if let Viewer::User(principal) = caller.viewer() {
        let directory =
            access::directory_for(&mut Source::Tx(tx), category_scope(category)).await?;
        if !domain::access::may_create_room(caller.viewer(), category, &directory) {
            return Err(ServiceError::Forbidden {
                message: format!(
                    "only administrators and creators of category `{}` may create rooms in it",
                    category.name
                ),
            });
        }
        // A creator becomes manager of each room it creates.
        room.managers.push(principal.clone());
        room.normalise();
    }
    check_addin_exists(tx, room.addin.as_deref()).await?;
    check_room_lists(tx, room, category, None).await
}

impl Service {
    /// Replaces an object with `object`, which may carry a new name.
    ///
    /// # Guarantees
    /// Replacing an object with what it already holds changes nothing, not even its version.
    ///
    /// # Errors
    /// As [`Service::create`], plus a version mismatch and a caller who may not change it.
    pub async fn replace(
        &self,
        caller: &Caller,
        name: &str,
        object: Object,
        precondition: Precondition,
        ownership: Ownership,
    ) -> Result<Stored<Object>> {
        let mut tx = self.store.begin(WriteAccess::new()).await?;
        let outcome = self
            .replace_in(&mut tx, caller, name, object, precondition, ownership)
            .await?;
        tx.commit().await?;
        self.notify_change();
        Ok(outcome)
    }

    async fn replace_in(
        &self,
        tx: &mut Tx,
        caller: &Caller,
        name: &str,
        mut object: Object,
        precondition: Precondition,
        ownership: Ownership,
    ) -> Result<Stored<Object>> {
        object.normalise();
        reject_problems(object.problems())?;
        let kind = object.kind();
        lock_rooms_before_a_rename(tx, kind, name, Some(object.name())).await?;
        let current_row = tx
            .get(kind, name)
            .await?
            .ok_or_else(|| ServiceError::not_found(kind, name))?;
        let current = Stored::<Object>::from_row(&current_row)?;
        if !access::sees(&mut Source::Tx(tx), caller, &current.spec).await? {
            return Err(ServiceError::not_found(kind, name));
        }
        // The name as stored: the one asked for may be another Unicode form of it, and every
        // reference (rooms of a category, rooms using an add-in) names the stored one.
        let stored_name = current_row.name.clone();
        let name = stored_name.as_str();
        check_precondition(kind, name, precondition, current.meta.version)?;
        let renamed = object.name() != name;
        refuse_escaping_a_hold(tx, &current.spec, &object).await?;
        match (&current.spec, &mut object) {
            (Object::Group(_), Object::Group(group)) => {
                require_admin(caller, "change groups")?;
                check_groups_exist(tx, "members", &group.members, Some(&group.name)).await?;
                if renamed {
                    rename_group_references(tx, name, &group.name, caller).await?;
                }
            }
            (Object::Addin(_), Object::Addin(addin)) => {
                require_admin(caller, "change add-ins")?;
                if renamed {
                    rename_references(tx, RoomReference::Addin, name, &addin.name, caller).await?;
                }
            }
            (Object::Category(old), Object::Category(category)) => {
                require_admin(caller, "change categories")?;
                check_category_lists(tx, category, Some(old)).await?;
                if renamed {
                    rename_references(tx, RoomReference::Category, name, &category.name, caller)
                        .await?;
                }
            }
            (Object::Room(old), Object::Room(room)) => {
                // The room's own category needs no visibility check: its managers keep
                // managing it even when they are outside its scope.
                let category = if room.category == old.category {
                    load_category(tx, &room.category).await?
                } else {
                    load_category_for(tx, caller, &room.category).await?
                };
                let lists = old.managers.iter().chain(category_scope(&category));
                let directory = access::directory_for(&mut Source::Tx(tx), lists).await?;
                match domain::access::may_change_room(caller.viewer(), old, &category, &directory) {
                    Ok(()) => {}
                    Err(ChangeRefusal::NotManager) => {
                        return Err(ServiceError::Forbidden {
                            message: format!(
                                "only administrators and managers of room `{name}` may change it"
                            ),
                        });
                    }
                    Err(ChangeRefusal::NotCreatorOfNewCategory) => {
                        return Err(ServiceError::Forbidden {
                            message: format!(
                                "a manager may move a room only into a category it creates rooms in, and `{}` is not one",
                                category.name
                            ),
                        });
                    }
                }
                check_addin_exists(tx, room.addin.as_deref()).await?;
                check_room_lists(tx, room, &category, Some(old)).await?;
            }
            _ => {
                return Err(ServiceError::invalid(
                    "kind",
                    ErrorCode::KindMismatch,
                    format!("`{name}` is a {kind}; the body describes another kind"),
                ));
            }
        }
        check_marks(caller, ownership)?;
        let current_marks = current.meta.marks();
        let marks = ownership.marks(current_marks);
        if object == current.spec && marks == current_marks {
            return Ok(current);
        }
        let now = clock::now();
        let write = write_of(&object, marks, &caller.name, &now)?;
        let written = tx.update(current.meta.id, write).await;
        let row = hide_duplicate(tx, caller, object.name(), written).await?;
        if row.kind == Kind::Room {
            announce(tx, &row, RoomChangeKind::Changed, &now).await?;
        }
        tracing::info!(%kind, name, by = %caller.name, "changed");
        Stored::<Object>::from_row(&row)
    }

    /// Applies a JSON merge to an object: fields given replace the current ones, and a list
    /// field given as `{"add": [...], "remove": [...]}` is changed entry by entry.
    pub async fn patch(
        &self,
        caller: &Caller,
        kind: Kind,
        name: &str,
        patch: serde_json::Map<String, Value>,
        precondition: Precondition,
    ) -> Result<Stored<Object>> {
        // The read, the merge and the write share one transaction, so that two concurrent
        // patches of one object both land (the second sees the first's result).
        let mut tx = self.store.begin(WriteAccess::new()).await?;
        let new_name = patch.get("name").and_then(Value::as_str);
        lock_rooms_before_a_rename(&mut tx, kind, name, new_name).await?;
        let row = tx
            .get(kind, name)
            .await?
            .ok_or_else(|| ServiceError::not_found(kind, name))?;
        let current = Stored::<Object>::from_row(&row)?;
        if !access::sees(&mut Source::Tx(&mut tx), caller, &current.spec).await? {
            return Err(ServiceError::not_found(kind, name));
        }
        let merged = object::merge_patch(&current.spec, patch)?;
        let outcome = self
            .replace_in(&mut tx, caller, name, merged, precondition, Ownership::Keep)
            .await?;
        tx.commit().await?;
        self.notify_change();
        Ok(outcome)
    }

    /// Removes an object; administrators only.
    ///
    /// `force` lets an add-in go while rooms still show it (they lose it).
    ///
    /// # Errors
    /// A category that still holds rooms, an add-in still in use without `force`, a group
    /// still named by a principal list, or a version mismatch.
    pub async fn remove(
        &self,
        caller: &Caller,
        kind: Kind,
        name: &str,
        precondition: Precondition,
        force: bool,
    ) -> Result<()> {
        let mut tx = self.store.begin(WriteAccess::new()).await?;
        self.remove_in(&mut tx, caller, kind, name, precondition, force)
            .await?;
        tx.commit().await?;
        self.notify_change();
        Ok(())
    }

    async fn remove_in(
        &self,
        tx: &mut Tx,
        caller: &Caller,
        kind: Kind,
        name: &str,
        precondition: Precondition,
        force: bool,
    ) -> Result<()> {
        if kind == Kind::Addin && force {
            // Its rooms are rewritten: locked first (invariant 2).
            tx.lock_rooms_naming(RoomReference::Addin, name).await?;
        }
        let row = tx.get(kind, name).await?;
        let Some(row) = row else {
            return Err(ServiceError::not_found(kind, name));
        };
        // The name as stored (see `replace_in`).
        let stored_name = row.name.clone();
        let name = stored_name.as_str();
        if !caller.is_admin() {
            let current = Stored::<Object>::from_row(&row)?;
            if !access::sees(&mut Source::Tx(tx), caller, &current.spec).await? {
                return Err(ServiceError::not_found(kind, name));
            }
        }
        require_admin(caller, "remove objects")?;
        check_precondition(kind, name, precondition, row.version)?;
        match kind {
            Kind::Category => {
                let rooms = tx.rooms_in_category(name).await?;
                if !rooms.is_empty() {
                    return Err(ServiceError::Conflict {
                        code: ErrorCode::CategoryNotEmpty,
                        message: format!(
                            "category `{name}` still holds rooms: {}; remove or move them first",
                            list_names(&rooms)
                        ),
                    });
                }
            }
            Kind::Addin => {
                let rooms = tx.rooms_using_addin(name).await?;
                if !rooms.is_empty() && !force {
                    return Err(ServiceError::Conflict {
                        code: ErrorCode::AddinInUse,
                        message: format!(
                            "add-in `{name}` is still used by rooms: {}; pass force=true to remove it from them",
                            list_names(&rooms)
                        ),
                    });
                }
                let now = clock::now();
                for room_name in rooms {
                    if let Some(room_row) = tx.get(Kind::Room, &room_name).await? {
                        let mut room = Stored::<Object>::from_row(&room_row)?;
                        if let Object::Room(room) = &mut room.spec {
                            room.addin = None;
                        }
                        let marks = room.meta.marks();
                        let write = write_of(&room.spec, marks, &caller.name, &now)?;
                        let updated = tx.update(room.meta.id, write).await?;
                        announce(tx, &updated, RoomChangeKind::Changed, &now).await?;
                    }
                }
            }
            Kind::Group => {
                let users = group_references(tx, name).await?;
                if !users.is_empty() {
                    return Err(ServiceError::Conflict {
                        code: ErrorCode::GroupInUse,
                        message: format!(
                            "group `{name}` is still named by {}; remove it from them first",
                            list_names(&users)
                        ),
                    });
                }
            }
            Kind::Room => {
                let room: Room = decode(&row)?;
                refuse_if_held(tx, HeldAct::RemoveRoom, &room.name, &room.category).await?;
                tx.delete_room_messages(row.id).await?;
            }
            Kind::ComplianceConfiguration => {}
        }
        let now = clock::now();
        tx.delete(row.id, &caller.name, &now).await?;
        if kind == Kind::Room {
            announce(tx, &row, RoomChangeKind::Removed, &now).await?;
        }
        tracing::info!(%kind, name, by = %caller.name, "removed");
        Ok(())
    }

    /// Reads the compliance configuration; administrators only. Never set: defaults, version 0.
    pub async fn compliance(&self, caller: &Caller) -> Result<Stored<ComplianceConfiguration>> {
        require_admin(caller, "read the compliance configuration")?;
        match self
            .store
            .get(Kind::ComplianceConfiguration, COMPLIANCE_NAME)
            .await?
        {
            Some(row) => Stored::from_row(&row),
            None => Ok(Stored {
                spec: ComplianceConfiguration::default(),
                kind: Kind::ComplianceConfiguration,
                meta: crate::api::Envelope::default(),
            }),
        }
    }

    /// Replaces the compliance configuration; administrators only.
    pub async fn set_compliance(
        &self,
        caller: &Caller,
        configuration: ComplianceConfiguration,
        precondition: Precondition,
        ownership: Ownership,
    ) -> Result<Stored<ComplianceConfiguration>> {
        let mut tx = self.store.begin(WriteAccess::new()).await?;
        let outcome = self
            .set_compliance_in(&mut tx, caller, configuration, precondition, ownership)
            .await?;
        tx.commit().await?;
        Ok(outcome)
    }

    async fn set_compliance_in(
        &self,
        tx: &mut Tx,
        caller: &Caller,
        configuration: ComplianceConfiguration,
        precondition: Precondition,
        ownership: Ownership,
    ) -> Result<Stored<ComplianceConfiguration>> {
        require_admin(caller, "change the compliance configuration")?;
        reject_problems(configuration.problems())?;
        let kind = Kind::ComplianceConfiguration;
        let current = tx.get(kind, COMPLIANCE_NAME).await?;
        let current_version = current.as_ref().map_or(0, |row| row.version);
        check_precondition(kind, COMPLIANCE_NAME, precondition, current_version)?;
        let now = clock::now();
        let body = serde_json::to_string(&configuration).map_err(ServiceError::internal)?;
        let write = |marks: Marks| ObjectWrite {
            kind,
            name: COMPLIANCE_NAME,
            category: None,
            addin: None,
            body: body.clone(),
            marks,
            updated_by: &caller.name,
            updated_at: &now,
        };
        let row = match current {
            Some(row) => {
                let stored: Stored<ComplianceConfiguration> = Stored::from_row(&row)?;
                let current_marks = row.marks;
                let marks = ownership.marks(current_marks);
                if stored.spec == configuration && marks == current_marks {
                    return Ok(stored);
                }
                tx.update(row.id, write(marks)).await?
            }
            None => tx.insert(write(ownership.marks(Marks::default()))).await?,
        };
        tracing::info!(by = %caller.name, "changed the compliance configuration");
        Stored::from_row(&row)
    }
}

const COMPLIANCE_NAME: &str = "global";

/// Records a room's change for live streams. A removal is announced at the version after the
/// room's last, so that a stream holding the last version sees it as newer.
async fn announce(tx: &mut Tx, room: &ObjectRow, change: RoomChangeKind, at: &str) -> Result<()> {
    let version = match change {
        RoomChangeKind::Removed => room.version + 1,
        RoomChangeKind::Created | RoomChangeKind::Changed => room.version,
    };
    tx.insert_room_change(room.id, &room.name, change, version, at)
        .await?;
    Ok(())
}

/// A write that met an existing name: when the caller may not see the object holding it,
/// "not found", as if the name were free, so that a secret room's existence never leaks.
/// Refuses a change that would take a room or a category out from under a legal hold:
/// renaming a held room or category (holds name what they stand on), or moving a room out of
/// a held category or a held room into another category.
async fn refuse_escaping_a_hold(tx: &mut Tx, current: &Object, next: &Object) -> Result<()> {
    match (current, next) {
        (Object::Room(old), Object::Room(new))
            if old.name != new.name || old.category != new.category =>
        {
            refuse_if_held(tx, HeldAct::Move, &old.name, &old.category).await
        }
        (Object::Category(old), Object::Category(new)) if old.name != new.name => {
            let holds = tx.holds_on(&[(Kind::Category, old.name.as_str())]).await?;
            match holds.first() {
                Some(hold) => Err(ServiceError::Conflict {
                    code: ErrorCode::Held,
                    message: format!(
                        "category `{}` cannot be renamed: a legal hold stands on it (placed by {} at {}: {})",
                        old.name, hold.placed_by, hold.placed_at, hold.reason
                    ),
                }),
                None => Ok(()),
            }
        }
        _ => Ok(()),
    }
}

async fn hide_duplicate(
    tx: &mut Tx,
    caller: &Caller,
    requested: &str,
    written: std::result::Result<ObjectRow, StoreError>,
) -> Result<ObjectRow> {
    match written {
        // Named as asked: the hidden holder's own spelling (another case) would leak too.
        Err(StoreError::Duplicate { kind, name })
            if access::hidden_from(&mut Source::Tx(tx), caller, kind, &name).await? =>
        {
            Err(ServiceError::not_found(kind, requested))
        }
        other => Ok(other?),
    }
}

/// Ownership marks are the administrators' alone (see [`domain::access::may_set_marks`]).
fn check_marks(caller: &Caller, ownership: Ownership) -> Result<()> {
    match ownership {
        Ownership::Managed { .. } | Ownership::Unmanaged
            if !domain::access::may_set_marks(caller.viewer()) =>
        {
            Err(ServiceError::Forbidden {
                message: "only administrators mark objects as managed or protected".to_owned(),
            })
        }
        _ => Ok(()),
    }
}

fn decode_all(rows: &[ObjectRow]) -> Result<Vec<Stored<Object>>> {
    rows.iter().map(Stored::<Object>::from_row).collect()
}

fn check_precondition(
    kind: Kind,
    name: &str,
    precondition: Precondition,
    actual: i64,
) -> Result<()> {
    let expected = match precondition {
        Precondition::None => return Ok(()),
        Precondition::Version(expected) if expected == actual => return Ok(()),
        Precondition::Version(expected) => expected.to_string(),
        Precondition::Unmatchable => "the tag sent".to_owned(),
    };
    Err(ServiceError::VersionMismatch {
        kind,
        name: name.to_owned(),
        expected,
        actual,
    })
}

fn reject_problems(problems: Vec<FieldProblem>) -> Result<()> {
    match problems.into_iter().next() {
        Some(problem) => Err(ServiceError::Invalid {
            code: problem.code,
            field: problem.field,
            message: problem.message,
        }),
        None => Ok(()),
    }
}

fn list_names(names: &[String]) -> String {
    const SHOWN: usize = 20;
    let mut text = names
        .iter()
        .take(SHOWN)
        .map(|name| format!("`{name}`"))
        .collect::<Vec<_>>()
        .join(", ");
    if names.len() > SHOWN {
        text.push_str(&format!(" and {} more", names.len() - SHOWN));
    }
    text
}

fn write_of<'a>(
    object: &'a Object,
    marks: Marks,
    by: &'a str,
    at: &'a str,
) -> Result<ObjectWrite<'a>> {
    let (category, addin) = match object {
        Object::Room(room) => (Some(room.category.as_str()), room.addin.as_deref()),
        _ => (None, None),
    };
    Ok(ObjectWrite {
        kind: object.kind(),
        name: object.name(),
        category,
        addin,
        body: object.body_json().map_err(ServiceError::internal)?,
        marks,
        updated_by: by,
        updated_at: at,
    })
}

async fn load_category(tx: &mut Tx, name: &str) -> Result<Category> {
    match tx.get(Kind::Category, name).await? {
        Some(row) => decode(&row),
        None => Err(unknown_category(name)),
    }
}

/// The category a room names, as the caller may know it: a category the caller may not see is
/// reported exactly as one that does not exist.
async fn load_category_for(tx: &mut Tx, caller: &Caller, name: &str) -> Result<Category> {
    let category = load_category(tx, name).await?;
    if !caller.is_admin() {
        let directory =
            access::directory_for(&mut Source::Tx(tx), category_scope(&category)).await?;
        if !domain::access::sees_category(caller.viewer(), &category, &directory) {
            return Err(unknown_category(name));
        }
    }
    Ok(category)
}

fn unknown_category(name: &str) -> ServiceError {
    ServiceError::Rule {
        code: ErrorCode::UnknownCategory,
        field: "category".to_owned(),
        message: format!("category `{name}` does not exist; create it before its rooms"),
    }
}

fn category_scope(category: &Category) -> impl Iterator<Item = &Principal> {
    category
        .allowed_members
        .iter()
        .chain(&category.denied_members)
        .chain(&category.creators)
}

async fn check_addin_exists(tx: &mut Tx, addin: Option<&str>) -> Result<()> {
    let Some(addin) = addin else { return Ok(()) };
    if tx.get(Kind::Addin, addin).await?.is_none() {
        return Err(ServiceError::Rule {
            code: ErrorCode::UnknownAddin,
            field: "addin".to_owned(),
            message: format!("add-in `{addin}` does not exist; register it before a room names it"),
        });
    }
    Ok(())
}

async fn check_groups_exist(
    tx: &mut Tx,
    field: &str,
    list: &[Principal],
    this_group: Option<&str>,
) -> Result<()> {
    for principal in list {
        if let Principal::Group(name) = principal {
            let exists =
                Some(name.as_str()) == this_group || tx.get(Kind::Group, name).await?.is_some();
            if !exists {
                return Err(ServiceError::Rule {
                    code: ErrorCode::UnknownGroup,
                    field: field.to_owned(),
                    message: format!("group `{name}` does not exist; create it before naming it"),
                });
            }
        }
    }
    Ok(())
}

/// Creators must come from the allowed members (outside the denied ones). Only entries new to
/// the list are checked, as the cmdlets checked only what `Add` named.
async fn check_category_lists(
    tx: &mut Tx,
    category: &Category,
    old: Option<&Category>,
) -> Result<()> {
    for (field, list) in [
        ("allowedMembers", &category.allowed_members),
        ("deniedMembers", &category.denied_members),
        ("creators", &category.creators),
    ] {
        check_groups_exist(tx, field, list, None).await?;
    }
    let directory = access::directory_for(&mut Source::Tx(tx), category_scope(category)).await?;
    let old_creators = old.map(|old| old.creators.as_slice()).unwrap_or_default();
    let outside =
        domain::access::outside_scope(category, &directory, &category.creators, old_creators);
    if let Some(creator) = outside.first() {
        return Err(ServiceError::Rule {
            code: ErrorCode::OutsideScope,
            field: "creators".to_owned(),
            message: format!(
                "creator `{creator}` is not within category `{}`'s allowed members (or is denied)",
                category.name
            ),
        });
    }
    Ok(())
}

/// Members, managers and presenters must fall within the category's scope (denied wins).
///
/// Entries new to a list are checked and refused when outside; entries a room already had are
/// purged when a move to another category leaves them outside, as the original did.
async fn check_room_lists(
    tx: &mut Tx,
    room: &mut Room,
    category: &Category,
    old: Option<&Room>,
) -> Result<()> {
    for (field, list) in room.role_lists() {
        check_groups_exist(tx, field, list, None).await?;
    }
    let involved = room
        .role_lists()
        .into_iter()
        .flat_map(|(_, list)| list.iter())
        .chain(category_scope(category));
    let directory = access::directory_for(&mut Source::Tx(tx), involved).await?;
    let moved = old.is_some_and(|old| old.category != room.category);
    let empty = Vec::new();
    let old_lists = match old {
        Some(old) => [&old.members, &old.managers, &old.presenters],
        None => [&empty, &empty, &empty],
    };
    let lists = [&mut room.members, &mut room.managers, &mut room.presenters];
    for ((field, list), old_list) in ["members", "managers", "presenters"]
        .into_iter()
        .zip(lists)
        .zip(old_lists)
    {
        let outside = domain::access::outside_scope(category, &directory, list, old_list);
        if let Some(principal) = outside.first() {
            return Err(ServiceError::Rule {
                code: ErrorCode::OutsideScope,
                field: field.to_owned(),
                message: format!(
                    "`{principal}` is not within category `{}`'s allowed members (or is denied)",
                    category.name
                ),
            });
        }
        if moved {
            // Entries the room already had are purged when the move leaves them outside, as
            // the original did.
            list.retain(|principal| category.admits(&directory, principal));
        }
    }
    Ok(())
}

/// A rename of a category or add-in rewrites the rooms that name it: they are locked before
/// it is, rooms before categories as every transaction takes them (invariant 2). Called
/// before the renamed object is read.
async fn lock_rooms_before_a_rename(
    tx: &mut Tx,
    kind: Kind,
    name: &str,
    new_name: Option<&str>,
) -> Result<()> {
    let reference = match kind {
        Kind::Category => RoomReference::Category,
        Kind::Addin => RoomReference::Addin,
        _ => return Ok(()),
    };
    if new_name.is_some_and(|new_name| new_name != name) {
        tx.lock_rooms_naming(reference, name).await?;
    }
    Ok(())
}

/// Points every room that names `old_name` in `column` (category or add-in) at `new_name`.
async fn rename_references(
    tx: &mut Tx,
    column: RoomReference,
    old_name: &str,
    new_name: &str,
    caller: &Caller,
) -> Result<()> {
    // Locked already by the caller, but for a room moved in since then.
    let rooms = tx.lock_rooms_naming(column, old_name).await?;
    let now = clock::now();
    for room_name in rooms {
        let Some(row) = tx.get(Kind::Room, &room_name).await? else {
            continue;
        };
        let mut room: Room = decode(&row)?;
        match column {
            RoomReference::Category => room.category = new_name.to_owned(),
            RoomReference::Addin => room.addin = Some(new_name.to_owned()),
        }
        let object = Object::Room(room);
        let write = write_of(&object, row.marks, &caller.name, &now)?;
        let updated = tx.update(row.id, write).await?;
        announce(tx, &updated, RoomChangeKind::Changed, &now).await?;
    }
    Ok(())
}

/// Points every principal list that names `group:OLD` at `group:NEW`: a renamed group keeps
/// its place in every room, category and group that named it.
async fn rename_group_references(
    tx: &mut Tx,
    old_name: &str,
    new_name: &str,
    caller: &Caller,
) -> Result<()> {
    let (old, new) = (
        Principal::Group(old_name.to_owned()),
        Principal::Group(new_name.to_owned()),
    );
    let now = clock::now();
    // Rooms first, then categories, each listed in name order: the order every transaction
    // locks them in (invariant 2); a post holds its rooms while it waits for a category.
    for kind in [Kind::Room, Kind::Category, Kind::Group] {
        for row in tx.list(kind).await? {
            let mut object = Stored::<Object>::from_row(&row)?.spec;
            if !object.principal_lists().any(|list| list.contains(&old)) {
                continue;
            }
            object.replace_principal(&old, &new);
            object.normalise();
            let write = write_of(&object, row.marks, &caller.name, &now)?;
            let updated = tx.update(row.id, write).await?;
            if kind == Kind::Room {
                announce(tx, &updated, RoomChangeKind::Changed, &now).await?;
            }
        }
    }
    Ok(())
}

/// The objects whose principal lists name `group:NAME`.
async fn group_references(tx: &mut Tx, name: &str) -> Result<Vec<String>> {
    let target = Principal::Group(name.to_owned());
    let mut users = Vec::new();
    for kind in [Kind::Group, Kind::Category, Kind::Room] {
        for row in tx.list(kind).await? {
            let object = Stored::<Object>::from_row(&row)?;
            if object
                .spec
                .principal_lists()
                .any(|list| list.contains(&target))
            {
                users.push(format!("{kind} {}", row.name));
            }
        }
    }
    Ok(users)
}

/// How a state read ended, as [`Service::state_json_stream`] hears it.
async fn read_end(
    end: Option<tokio::sync::oneshot::Receiver<std::result::Result<(), StoreError>>>,
) -> Result<()> {
    match end {
        None => Ok(()),
        Some(end) => match end.await {
            Ok(read) => Ok(read?),
            Err(_) => Err(ServiceError::internal("the state read stopped")),
        },
    }
}

/// The parts of the document of `GET /v1/state` (see [`Service::state_json_stream`]).
pub struct StateJsonStream {
    /// How the document begins, in its layout.
    opening: &'static str,
    /// Whether the document's opening was sent, with `first`, the first page (if any).
    opened: bool,
    first: Option<String>,
    /// A page whose separating comma was sent, to send next as it is (not copied behind the
    /// comma: a hundred thousand objects are sixty megabytes).
    after_comma: Option<String>,
    pages: tokio::sync::mpsc::UnboundedReceiver<String>,
    /// How the read ended, until heard.
    end: Option<tokio::sync::oneshot::Receiver<std::result::Result<(), StoreError>>>,
    /// The read was heard to end well before the stream began (an empty state): the closing
    /// is still to send.
    closing_due: bool,
}

impl tokio_stream::Stream for StateJsonStream {
    type Item = Result<String>;

    fn poll_next(
        mut self: std::pin::Pin<&mut Self>,
        context: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Self::Item>> {
        use std::task::Poll;
        if !self.opened {
            self.opened = true;
            let mut part = String::from(self.opening);
            if let Some(page) = self.first.take() {
                part.push_str(&page);
            }
            return Poll::Ready(Some(Ok(part)));
        }
        if let Some(page) = self.after_comma.take() {
            return Poll::Ready(Some(Ok(page)));
        }
        match self.pages.poll_recv(context) {
            Poll::Ready(Some(page)) => {
                self.after_comma = Some(page);
                return Poll::Ready(Some(Ok(",".to_owned())));
            }
            Poll::Pending => return Poll::Pending,
            // Closed: the reader sent every page (it drops its sender before it says how the
            // read ended), so the end comes after the last page, never before it.
            Poll::Ready(None) => {}
        }
        let Some(end) = self.end.as_mut() else {
            let closing_due = std::mem::take(&mut self.closing_due);
            return Poll::Ready(closing_due.then(|| Ok(STATE_CLOSING.to_owned())));
        };
        let ended = match std::pin::Pin::new(end).poll(context) {
            Poll::Pending => return Poll::Pending,
            Poll::Ready(Ok(Ok(()))) => Ok(STATE_CLOSING.to_owned()),
            Poll::Ready(Ok(Err(error))) => Err(error.into()),
            Poll::Ready(Err(_)) => Err(ServiceError::internal("the state read stopped")),
        };
        self.end = None;
        Poll::Ready(Some(ended))
    }
}
